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

/** WebGPU when the browser has an adapter (or ?ep=webgpu), else WASM with threads when cross-origin isolated. */
async function chooseBackend() {
  const asked = params.get("ep");
  if (asked) return asked;
  try {
    if (navigator.gpu && (await navigator.gpu.requestAdapter())) return "webgpu";
  } catch { /* no adapter: WASM */ }
  return "wasm";
}

async function loadModel(url) {
  setStatus("loading", `Loading ${url} ...`);
  const meta = await (await fetchOk(`${url}.json`, "model's metadata (.json sidecar)")).json();
  const spec = inputSpec(meta);
  const bytes = new Uint8Array(await (await fetchOk(url, "model")).arrayBuffer());
  const backend = await chooseBackend();
  ort = await import(`${ORT_DIR}${backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = new URL(ORT_DIR, location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [backend] });
  model = { session, meta, spec, backend };
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
  const outputName = meta.output.name;
  let start = performance.now();
  await session.run(feeds); // the first run also compiles (WebGPU shaders, WASM buffers)
  const firstRunMs = performance.now() - start;
  start = performance.now();
  const output = (await session.run(feeds))[outputName];
  const timeMs = performance.now() - start;
  const dtype = meta.output.dtype || "float32";
  if (output.type !== dtype) throw new Error(`output ${outputName} is ${output.type}, not ${dtype}`);
  const result = meta.task === "seg" ? showClasses(output) : showDepth(output);
  shown = { bitmap, ...result.shown };
  draw();
  window.mcqResult = {
    ...result.fields, shape: output.dims.slice(-2), timeMs, firstRunMs, backend: model.backend,
    threads: model.backend === "wasm" ? ort.env.wasm.numThreads : null, crossOriginIsolated: self.crossOriginIsolated,
    image: [bitmap.width, bitmap.height],
  };
  setStatus("done", `${timeMs.toFixed(1)} ms per image on ${model.backend} (first run ${firstRunMs.toFixed(1)} ms)`);
}

/** Seg: the class overlay (half transparent) and the legend of the classes present. */
function showClasses(output) {
  const mask = classMask(output.data, output.dims, model.meta.output);
  const classes = classShares(mask, model.meta.class_names);
  legend(classes);
  return {
    shown: { colours: colourise(mask, model.meta.palette), alpha: 0.5 }, fields: { mask: Array.from(mask), classes },
  };
}

/** Depth: the colour map over the image's own range (opaque) and its min / max in the metadata's units. */
function showDepth(depth) {
  const [lo, hi] = depthRange(depth.data);
  const units = model.meta.output.units, unit = units === "metres" ? "m" : units;
  $("depth-bar").style.background = `linear-gradient(to right, ${DEPTH_RAMP.map((c) => `rgb(${c.join(",")})`).join(", ")})`;
  $("depth-min").textContent = `${lo.toFixed(2)} ${unit}`;
  $("depth-max").textContent = `${hi.toFixed(2)} ${unit}`;
  $("depth-legend").hidden = false;
  return { shown: { colours: colourDepth(depth.data, lo, hi), alpha: 1 },
    fields: { depth: Array.from(depth.data), min: lo, max: hi, units } };
}

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
