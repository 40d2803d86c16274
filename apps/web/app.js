// The page: load an exported mcq segmentation or depth model (.onnx + its .json metadata), run it on an image in the
// browser on onnxruntime-web, draw the class overlay and legend, or the colour-mapped depth and its range in metres.
// Everything model-specific (task included) comes from the metadata.
import {
  argmax, classMask, classShares, colourDepth, colourise, DEPTH_RAMP, depthRange, inputSpec, preprocess, resizeBilinear,
} from "./mcq.js";

const ORT_DIR = "./node_modules/onnxruntime-web/dist/";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let ort = null; // onnxruntime-web: its WebGPU build (WebGPU + WASM) only when WebGPU runs, the faster plain WASM else
let model = null; // { session, meta, spec, backend }
let shown = null; // { bitmap, colours, alpha } of the last result, redrawn when the overlay is toggled
let last = null; // { pixels, width, height, feeds } of the last image, for window.mcqBenchmark

// For a test or the console: mcq's processing on plain arrays, and the last result.
window.mcqPreprocess = (pixels, w, h, meta, channels = 4) =>
  Array.from(preprocess(Uint8Array.from(pixels), w, h, meta, channels).data);
window.mcqArgmax = (logits, dims) => Array.from(argmax(Float32Array.from(logits), dims));
window.mcqClassMask = (data, dims, output) => Array.from(classMask(data, dims, output));
window.mcqResize = (pixels, w, h, c, outW, outH) => Array.from(resizeBilinear(Uint8Array.from(pixels), w, h, c, outW, outH));
window.mcqColourDepth = (depth, lo, hi) => Array.from(colourDepth(Float32Array.from(depth), lo, hi));

function setStatus(status, text) {
  document.body.dataset.status = status;
  $("status").textContent = text;
}

function fail(error) {
  window.mcqError = String(error.message || error);
  setStatus("error", `Error: ${window.mcqError}`);
}

async function fetchOk(url, what) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: cannot fetch the ${what} (HTTP ${response.status})`);
  return response;
}

/** Why WebGPU cannot run here (no navigator.gpu, no adapter, only a software one), or null when it can. */
async function webgpuMissing() {
  if (!navigator.gpu) return "navigator.gpu is absent (no WebGPU in this browser)";
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed: ${e.message || e}`;
  }
  if (!adapter) return "navigator.gpu.requestAdapter() returned null (no GPU adapter)";
  if (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) return "only a software (fallback) WebGPU adapter";
  return null;
}
window.mcqWebgpuMissing = webgpuMissing;

/** WebGPU when the browser has a GPU adapter (or ?ep=webgpu), else WASM with threads when cross-origin isolated. */
async function chooseBackend() {
  return params.get("ep") || ((await webgpuMissing()) ? "wasm" : "webgpu");
}

async function loadModel(url) {
  setStatus("loading", `Loading ${url} ...`);
  const meta = await (await fetchOk(`${url}.json`, "model's metadata (.json sidecar)")).json();
  const spec = inputSpec(meta);
  const backend = await chooseBackend();
  ort = await import(`${ORT_DIR}${backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = new URL(ORT_DIR, location.href).href;
  ort.env.wasm.numThreads = Number(params.get("threads")) ||
    (self.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1);
  // the cold start (loadMs): the model fetched and its session created, which on a fresh page also instantiates
  // onnxruntime-web's WASM; the ort module's import is before it
  const start = performance.now();
  const bytes = new Uint8Array(await (await fetchOk(url, "model")).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [backend] });
  model = { session, meta, spec, backend, loadMs: performance.now() - start };
  const name = url.split("/").pop();
  const what = meta.task === "seg" ? `${meta.class_names.length} classes`
    : `depth in ${meta.output.units} up to ${meta.output.max_depth}`;
  const threads = ort.env.wasm.numThreads;
  $("model-info").textContent = `${name}: ${meta.encoder} ${meta.head}, ${meta.precision || ""} ` +
    `${spec.width}x${spec.height}, ` +
    `${what}, ${backend}${backend === "wasm" ? ` (${threads} thread${threads > 1 ? "s" : ""})` : ""}`;
  setStatus("ready", "Model loaded: choose an image.");
}

async function infer(blob) {
  if (!model) throw new Error("no model loaded: open the page with ?model=URL");
  setStatus("running", "Running the model ...");
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const pixels = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const { spec, meta, session } = model;
  const { data, dims } = preprocess(pixels, bitmap.width, bitmap.height, meta);
  const feeds = { [spec.name]: new ort.Tensor("float32", data, dims) };
  last = { pixels, width: bitmap.width, height: bitmap.height, feeds };
  const outputName = meta.output.name;
  let start = performance.now();
  await session.run(feeds); // the first run also compiles (WebGPU shaders, WASM buffers)
  const firstRunMs = performance.now() - start;
  start = performance.now();
  const output = (await session.run(feeds))[outputName];
  const timeMs = performance.now() - start;
  const dtype = meta.output.dtype || "float32";
  if (output.type !== dtype) throw new Error(`output ${outputName} is ${output.type}, not ${dtype}`);
  const result = meta.task === "seg" ? showClasses(postprocess(output)) : showDepth(output, postprocess(output));
  shown = { bitmap, ...result.shown };
  draw();
  window.mcqResult = {
    ...result.fields, shape: output.dims.slice(-2), timeMs, firstRunMs, backend: model.backend,
    threads: model.backend === "wasm" ? ort.env.wasm.numThreads : null, crossOriginIsolated: self.crossOriginIsolated,
    image: [bitmap.width, bitmap.height], loadMs: model.loadMs,
  };
  setStatus("done", `${timeMs.toFixed(1)} ms per image on ${model.backend} (first run ${firstRunMs.toFixed(1)} ms)`);
}

/** The page's post-processing of one output: seg the class mask and its colours, depth its range and colours. */
function postprocess(output) {
  const { meta } = model;
  if (meta.task === "seg") {
    const mask = classMask(output.data, output.dims, meta.output);
    return { mask, colours: colourise(mask, meta.palette) };
  }
  const [lo, hi] = depthRange(output.data);
  return { lo, hi, colours: colourDepth(output.data, lo, hi) };
}

/** Seg: the class overlay (half transparent) and the legend of the classes present. */
function showClasses({ mask, colours }) {
  const classes = classShares(mask, model.meta.class_names);
  legend(classes);
  return { shown: { colours, alpha: 0.5 }, fields: { mask: Array.from(mask), classes } };
}

/** Depth: the colour map over the image's own range (opaque) and its min / max in the metadata's units. */
function showDepth(depth, { lo, hi, colours }) {
  const units = model.meta.output.units, unit = units === "metres" ? "m" : units;
  $("depth-bar").style.background = `linear-gradient(to right, ${DEPTH_RAMP.map((c) => `rgb(${c.join(",")})`).join(", ")})`;
  $("depth-min").textContent = `${lo.toFixed(2)} ${unit}`;
  $("depth-max").textContent = `${hi.toFixed(2)} ${unit}`;
  $("depth-legend").hidden = false;
  return { shown: { colours, alpha: 1 }, fields: { depth: Array.from(depth.data), min: lo, max: hi, units } };
}

/** ms of each of ``n`` calls of ``f`` (awaited), in real time. */
async function timed(f, n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await f();
    ms.push(performance.now() - start);
  }
  return ms;
}

/** For `mcq profile --runtimes web`: ms of each of ``runs`` calls of the page's pre-processing of the last image
 * (preMs), of the model on its input (runsMs: session.run alone, after ``warmup`` untimed calls) and of the
 * post-processing of its output (postMs); with the load time, the backend and onnxruntime-web's thread count. */
async function benchmark(runs, warmup) {
  if (!last) throw new Error("no image has run yet: open the page with &image=URL");
  const { pixels, width, height, feeds } = last, { session, meta } = model;
  const preMs = await timed(() => preprocess(pixels, width, height, meta), runs);
  await timed(() => session.run(feeds), warmup);
  let output = null;
  const runsMs = await timed(async () => { output = (await session.run(feeds))[meta.output.name]; }, runs);
  const postMs = await timed(() => postprocess(output), runs);
  return { runsMs, preMs, postMs, loadMs: model.loadMs, backend: model.backend, threads: ort.env.wasm.numThreads,
    crossOriginIsolated: self.crossOriginIsolated };
}
window.mcqBenchmark = benchmark;

function draw() {
  const { bitmap, colours, alpha } = shown;
  const { spec } = model;
  const view = $("view");
  view.width = bitmap.width;
  view.height = bitmap.height;
  const ctx = view.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  if (!$("show-overlay").checked) return;
  const small = new OffscreenCanvas(spec.width, spec.height);
  small.getContext("2d").putImageData(new ImageData(colours, spec.width, spec.height), 0, 0);
  ctx.globalAlpha = alpha;
  ctx.imageSmoothingEnabled = false; // boundaries stay crisp: nearest, from the input size to the image's
  ctx.drawImage(small, 0, 0, bitmap.width, bitmap.height);
  ctx.globalAlpha = 1;
}

function legend(classes) {
  const list = $("legend");
  list.replaceChildren(...classes.map(({ index, name, share }) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${model.meta.palette[index].join(",")})`;
    item.append(swatch, `${name} (${(100 * share).toFixed(1)}%)`);
    return item;
  }));
}

async function inferUrl(url) {
  await infer(await (await fetchOk(url, "image")).blob());
}

const guard = (f) => (...args) => f(...args).catch(fail);
$("file").addEventListener("change", guard(async (e) => e.target.files[0] && infer(e.target.files[0])));
$("sample").addEventListener("click", guard(() => inferUrl("sample.jpg")));
$("show-overlay").addEventListener("change", () => shown && draw());
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", guard(async (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
  if (file) await infer(file);
}));

guard(async () => {
  if (!params.get("model")) return;
  await loadModel(params.get("model"));
  if (params.get("image")) await inferUrl(params.get("image"));
})();
