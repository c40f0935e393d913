// The playground: build a POST /v1/layouts request, draw each returned layout as labelled SVG
// boxes. Which fields exist (and their allowed values) is read from the API's own description
// (/openapi.json), so controls for fields this server does not take are never shown or sent.

import {callApi, download, el, findKey, fmt, svgEl, typeColor} from "./common.js";

const $ = (id) => document.getElementById(id);
const OPTIONAL_FIELDS = ["steps", "constraints", "fixed"];
const page = {props: {}, elementTypes: [], picked: [], imageB64: null, imageUrl: null, last: null};

// ----------------------------------------------------------------------------- the form

function requestSchema(doc) {
  const op = doc && doc.paths && doc.paths["/v1/layouts"] && doc.paths["/v1/layouts"].post;
  return findKey(op && op.requestBody, "schema") || {};
}

function setBounds(input, prop) {
  const lo = findKey(prop, "minimum"), hi = findKey(prop, "maximum");
  if (lo !== undefined) input.min = lo;
  if (hi !== undefined) input.max = hi;
}

function applySchema(schema) {
  const props = schema.properties || {};
  page.props = props;
  for (const t of findKey(props.section_type, "enum") || []) $("section").append(el("option", {value: t, text: t}));
  page.elementTypes = findKey(props.elements, "enum") || [];
  renderPalette();
  setBounds($("samples"), props.samples);
  setBounds($("width"), findKey(props.canvas, "width"));
  setBounds($("height"), findKey(props.canvas, "height"));
  for (const name of OPTIONAL_FIELDS) {  // only what this server's API takes
    document.querySelector(`[data-field="${name}"]`).hidden = !(name in props);
  }
  if ("steps" in props) setBounds($("steps"), props.steps);
  if ("constraints" in props) {
    for (const v of findKey(props.constraints, "enum") || []) $("constraints").append(el("option", {value: v, text: v}));
  }
}

function renderPalette() {
  $("palette").replaceChildren(...page.elementTypes.map((t) => el("button", {
    type: "button", class: "chip add", "data-type": t, onclick: () => { page.picked.push(t); renderPicked(); },
  }, `+ ${t}`)));
}

function renderPicked() {
  $("picked").replaceChildren(...page.picked.map((t, i) => el("span", {class: "chip picked", "data-type": t}, t,
    el("button", {type: "button", class: "x", "aria-label": `remove ${t}`,
                  onclick: () => { page.picked.splice(i, 1); renderPicked(); }}, "×"))));
}

function bytesToBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// A PNG is sent as it is; another image the browser can decode is converted to PNG; anything
// else is sent unchanged, so the API (not the page) says what is wrong with it.
async function asPngBytes(file) {
  const raw = new Uint8Array(await file.arrayBuffer());
  if (file.type === "image/png" || !file.type.startsWith("image/")) return raw;
  try {
    const bmp = await createImageBitmap(file);
    const canvas = el("canvas", {width: bmp.width, height: bmp.height});
    canvas.getContext("2d").drawImage(bmp, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    return new Uint8Array(await blob.arrayBuffer());
  } catch (e) {
    return raw;
  }
}

async function onImage() {
  const file = $("image").files[0];
  clearImage(false);
  if (!file) return;
  const bytes = await asPngBytes(file);
  page.imageB64 = bytesToBase64(bytes);
  page.imageUrl = `data:image/png;base64,${page.imageB64}`;
  $("preview").src = page.imageUrl;
  $("preview").hidden = false;
  $("clear-image").hidden = false;
}

function clearImage(resetInput = true) {
  page.imageB64 = page.imageUrl = null;
  $("preview").hidden = true;
  $("preview").removeAttribute("src");
  $("clear-image").hidden = true;
  if (resetInput) $("image").value = "";
}

function numberOf(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

// The request body; optional fields only when set. Throws a message for input the page cannot
// even encode (the API checks everything else and words its own errors).
function buildBody() {
  const body = {};
  if ($("section").value) body.section_type = $("section").value;
  if (page.picked.length) body.elements = [...page.picked];
  if (page.imageB64) body.image = page.imageB64;
  body.canvas = {width: numberOf("width"), height: numberOf("height")};
  for (const name of ["samples", "temperature", "top_p", "seed"]) {
    const v = numberOf(name);
    if (v !== undefined) body[name] = v;
  }
  if ("steps" in page.props && numberOf("steps") !== undefined) body.steps = numberOf("steps");
  if ("constraints" in page.props && $("constraints").value) body.constraints = $("constraints").value;
  if ("fixed" in page.props && $("fixed").value.trim()) {
    try { body.fixed = JSON.parse($("fixed").value); } catch (e) { throw `fixed: not valid JSON (${e.message})`; }
  }
  return body;
}

// ----------------------------------------------------------------------------- results

function layoutSvg(layout, canvas, index) {
  const {width: W, height: H} = canvas;
  const font = Math.max(10, Math.round(Math.min(W, H) / 28));
  const svg = svgEl("svg", {class: "layout", viewBox: `0 0 ${W} ${H}`, xmlns: "http://www.w3.org/2000/svg",
                            role: "img", "aria-label": `sample ${index + 1}: ${layout.elements.length} boxes`});
  svg.append(svgEl("rect", {x: 0, y: 0, width: W, height: H, fill: "#ffffff"}));
  if (page.imageUrl) {
    svg.append(svgEl("image", {href: page.imageUrl, x: 0, y: 0, width: W, height: H,
                               preserveAspectRatio: "none", opacity: 0.35}));
  }
  layout.elements.forEach((b, i) => {
    const color = typeColor(b.type, page.elementTypes);
    const pin = "fixed" in page.props ? () => togglePin(b, g) : null;
    const g = svgEl("g", {class: pin ? "element pinnable" : "element", "data-type": b.type, onclick: pin},
      svgEl("title", {text: `${i + 1}. ${b.type} (${b.x}, ${b.y}) ${b.width}×${b.height}`}),
      svgEl("rect", {class: "box", "data-type": b.type, x: b.x, y: b.y, width: Math.max(1, b.width),
                     height: Math.max(1, b.height), fill: color, "fill-opacity": 0.22, stroke: color,
                     "stroke-width": Math.max(2, W / 360)}),
      svgEl("text", {x: b.x + font * 0.3, y: b.y + font, "font-size": font, fill: "#1d2330",
                     "font-family": "system-ui, sans-serif", text: `${i + 1} ${b.type}`}));
    svg.append(g);
  });
  return svg;
}

// A click on a drawn box adds it to (or removes it from) the `fixed` list: the next request
// keeps it in place and generates the rest.
function togglePin(box, g) {
  let list;
  try { list = JSON.parse($("fixed").value || "[]"); } catch (e) { list = []; }
  if (!Array.isArray(list)) list = [];
  const keys = ["type", "x", "y", "width", "height"];
  const same = (f) => f && keys.every((k) => f[k] === box[k]);
  const at = list.findIndex(same);
  if (at >= 0) list.splice(at, 1); else list.push(Object.fromEntries(keys.map((k) => [k, box[k]])));
  $("fixed").value = list.length ? JSON.stringify(list) : "";
  g.classList.toggle("pinned", at < 0);
}

// The layout's scores as the API gave them (alignment, overlap, and any newer ones).
function scoreText(layout) {
  return Object.entries(layout).filter(([k, v]) => k !== "elements" && typeof v === "number")
    .map(([k, v]) => `${k} ${fmt(v, 3)}`).join(" · ");
}

async function svgToPng(svg, canvas) {
  const scale = Math.min(1, 1600 / canvas.width);
  const text = new XMLSerializer().serializeToString(svg);
  const url = URL.createObjectURL(new Blob([text], {type: "image/svg+xml"}));
  try {
    const img = new Image();
    await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
    const c = el("canvas", {width: Math.round(canvas.width * scale), height: Math.round(canvas.height * scale)});
    c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
    return await new Promise((resolve) => c.toBlob(resolve, "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

function renderResults(res, body, ms) {
  const canvas = {width: body.canvas.width, height: body.canvas.height};
  page.last = {request: {...body, image: body.image ? "(omitted)" : undefined}, response: res};
  $("result-meta").replaceChildren(
    el("span", {}, "model ", el("b", {id: "result-version"}, res.version)),
    el("span", {}, "slot ", el("b", {}, res.slot)),
    el("span", {}, "latency ", el("b", {id: "result-latency"}, `${Math.round(ms)} ms`)),
    el("span", {}, `${res.layouts.length} layout${res.layouts.length === 1 ? "" : "s"}`));
  $("sample-list").replaceChildren(...res.layouts.map((layout, i) => {
    const svg = layoutSvg(layout, canvas, i);
    const png = el("button", {type: "button", class: "small", onclick: async () =>
      download(await svgToPng(svg, canvas), `layout-${i + 1}.png`)}, "PNG");
    return el("figure", {class: "sample", "data-index": i}, svg,
      el("figcaption", {}, el("b", {}, `#${i + 1}`), el("span", {class: "scores"}, scoreText(layout)), png));
  }));
  $("downloads").hidden = false;
  if (matchMedia("(max-width: 760px)").matches) $("results").scrollIntoView();  // one column: show them
}

async function generate(ev) {
  ev.preventDefault();
  $("error").textContent = "";
  let body;
  try { body = buildBody(); } catch (msg) { $("error").textContent = String(msg); return; }
  $("generate").disabled = true;
  $("busy").textContent = "generating…";
  const r = await callApi("v1/layouts", {method: "POST", body});
  $("generate").disabled = false;
  $("busy").textContent = "";
  if (!r.ok) {
    $("error").textContent = r.error;
    return;
  }
  renderResults(r.data, body, r.ms);
}

async function init() {
  $("spec-form").addEventListener("submit", generate);
  $("image").addEventListener("change", onImage);
  $("clear-image").addEventListener("click", () => clearImage());
  $("download-json").addEventListener("click", () => download(
    new Blob([JSON.stringify(page.last, null, 2)], {type: "application/json"}), "layouts.json"));
  renderPicked();
  const [doc, models] = await Promise.all([callApi("openapi.json"), callApi("v1/models")]);
  if (!doc.ok) {
    $("error").textContent = `could not read the API description: ${doc.error}`;
    return;
  }
  applySchema(requestSchema(doc.data));
  if (models.ok) {
    $("serving").textContent = "serving " + models.data.versions.filter((v) => v.weight > 0)
      .map((v) => `${v.id} (${fmt(v.weight, 0)} %)`).join(", ");
  }
  document.body.dataset.ready = "1";
}

init();
