// mcq's pre- and post-processing for a segmentation or depth artifact, read from its metadata sidecar
// (<artifact>.json, schema: mcq/tasks/metadata.schema.json). Pure functions on typed arrays: the page uses them,
// and so can Node or a test (the page exposes them as window.mcqPreprocess, window.mcqArgmax, window.mcqClassMask,
// window.mcqResize, window.mcqColourDepth).

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed point for 8-bit resampling
const ONE = 2 ** PRECISION_BITS;

export const TASKS = ["seg", "depth"];

/** What the model takes, from the metadata; throws one line when the page cannot honour it. */
export function inputSpec(meta) {
  if (!TASKS.includes(meta.task)) throw new Error(`a ${meta.task} model: this page shows segmentation and depth models`);
  const inp = meta.input;
  if (inp.layout !== "NCHW" || inp.color !== "RGB" || inp.dtype !== "float32") {
    throw new Error(`input ${inp.layout} ${inp.color} ${inp.dtype}: this page feeds NCHW RGB float32`);
  }
  if (!inp.resize.startsWith("stretch")) throw new Error(`resize "${inp.resize}": this page only stretches`);
  const [, channels, height, width] = inp.shape;
  return { name: inp.name, channels, height, width, range: inp.range, mean: inp.mean, std: inp.std };
}

// Pillow's bilinear resampling (Resample.c): a triangle filter widened by the scale when shrinking (antialias),
// 8-bit fixed-point weights, the horizontal pass then the vertical one, each rounded to 8 bits.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filterscale; // the bilinear filter's support is 1
  const bounds = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = [];
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) / filterscale);
      w.push(t < 1 ? 1 - t : 0);
      total += w[x];
    }
    const fixed = w.map((v) => {
      const k = total !== 0 ? v / total : v;
      return k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    });
    bounds.push([xmin, fixed]);
  }
  return bounds;
}

function clip8(acc) {
  if (acc >= ONE * 256) return 255;
  if (acc <= 0) return 0;
  return Math.floor(acc / ONE);
}

function pass(src, w, h, c, outSize, horizontal) {
  const coeffs = coefficients(horizontal ? w : h, outSize);
  const ow = horizontal ? outSize : w, oh = horizontal ? h : outSize;
  const out = new Uint8ClampedArray(ow * oh * c);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [start, k] = coeffs[horizontal ? x : y];
      for (let ch = 0; ch < c; ch++) {
        let acc = ONE / 2;
        for (let i = 0; i < k.length; i++) {
          const idx = horizontal ? (y * w + start + i) * c + ch : ((start + i) * w + x) * c + ch;
          acc += src[idx] * k[i];
        }
        out[(y * ow + x) * c + ch] = clip8(acc);
      }
    }
  }
  return out;
}

/** Resize interleaved 8-bit pixels (``c`` channels, ``w`` x ``h``) to ``outW`` x ``outH`` as Pillow's BILINEAR does. */
export function resizeBilinear(pixels, w, h, c, outW, outH) {
  let out = pixels;
  if (outW !== w) out = pass(out, w, h, c, outW, true);
  if (outH !== h) out = pass(out, outW, h, c, outH, false);
  return out;
}

/** RGBA (or RGB, ``c`` = 3) pixels of a ``w`` x ``h`` image -> the model's input: stretched to the input size,
 * scaled to the metadata's range, normalised with its mean/std, NCHW float32. */
export function preprocess(pixels, w, h, meta, c = 4) {
  const spec = inputSpec(meta);
  const H = spec.height, W = spec.width, plane = H * W;
  const resized = resizeBilinear(pixels, w, h, c, W, H);
  const [lo, hi] = spec.range;
  const data = new Float32Array(3 * plane);
  for (let ch = 0; ch < 3; ch++) {
    const mean = Math.fround(spec.mean[ch]), std = Math.fround(spec.std[ch]);
    for (let i = 0; i < plane; i++) {
      const v = Math.fround(lo + Math.fround(resized[i * c + ch] / 255) * (hi - lo));
      data[ch * plane + i] = Math.fround(v - mean) / std;
    }
  }
  return { data, dims: [1, 3, H, W] };
}

/** Class index per pixel of logits ``dims`` = [1, K, H, W] (the first of equal maxima, as numpy's argmax). */
export function argmax(logits, dims) {
  const [, k, h, w] = dims, plane = h * w;
  const mask = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) {
    let best = 0, top = logits[i];
    for (let j = 1; j < k; j++) {
      const v = logits[j * plane + i];
      if (v > top) { top = v; best = j; }
    }
    mask[i] = best;
  }
  return mask;
}

/** Class index per pixel of a seg model's output, by the metadata's ``output``: labels [1, H, W] (uint8 or int32:
 * `mcq export --outputs labels` took the argmax in the model) as they are, else the ``argmax`` of logits. */
export function classMask(data, dims, output) {
  return output.name === "labels" ? Uint8Array.from(data) : argmax(data, dims);
}

/** RGBA pixels colouring ``mask`` with the metadata's palette (opaque). */
export function colourise(mask, palette) {
  const out = new Uint8ClampedArray(mask.length * 4);
  mask.forEach((m, i) => {
    out.set(palette[m], i * 4);
    out[i * 4 + 3] = 255;
  });
  return out;
}

/** The class indices present in ``mask``, with their share of the pixels, most frequent first. */
export function classShares(mask, classNames) {
  const counts = new Map();
  for (const m of mask) counts.set(m, (counts.get(m) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])
    .map(([index, n]) => ({ index, name: classNames[index], share: n / mask.length }));
}

// Depth colour map, near -> far: matplotlib's turbo at 9 even steps, reversed (near is red), interpolated linearly;
// the same table as mcq.apps.reference.DEPTH_RAMP, which the test checks this against.
export const DEPTH_RAMP = [[122, 4, 3], [208, 47, 5], [251, 126, 33], [238, 207, 58], [164, 252, 60], [50, 242, 152],
  [40, 188, 235], [70, 107, 227], [48, 18, 59]];

/** The smallest and largest finite value of ``depth``. */
export function depthRange(depth) {
  let lo = Infinity, hi = -Infinity;
  for (const d of depth) {
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  return [lo, hi];
}

/** RGBA pixels (opaque) colouring ``depth`` on DEPTH_RAMP from ``lo`` (near) to ``hi`` (far); each channel rounded
 * half up; ``hi <= lo`` colours everything as near. */
export function colourDepth(depth, lo, hi) {
  const out = new Uint8ClampedArray(depth.length * 4), last = DEPTH_RAMP.length - 1;
  depth.forEach((d, p) => {
    const t = hi > lo ? Math.min(Math.max((d - lo) / (hi - lo), 0), 1) : 0;
    const x = t * last, i = Math.min(Math.floor(x), last - 1), f = x - i;
    for (let c = 0; c < 3; c++) {
      out[p * 4 + c] = Math.floor(DEPTH_RAMP[i][c] + (DEPTH_RAMP[i + 1][c] - DEPTH_RAMP[i][c]) * f + 0.5);
    }
    out[p * 4 + 3] = 255;
  });
  return out;
}
