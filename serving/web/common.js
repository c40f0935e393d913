// Helpers shared by the playground and the console: DOM building, API calls, formatting.
// No dependencies; the pages load it as an ES module from their own origin (CSP: 'self' only).

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// el("div", {class: "x", onclick: fn}, child, "text"): text is always inserted as text, never as HTML.
export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svgEl(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

// The API's own words for a failed call: "field: message" from {"error": {"field", "message"}}.
export function apiErrorText(status, body) {
  const err = body && typeof body === "object" ? body.error : null;
  if (err && typeof err === "object" && typeof err.message === "string") {
    return (err.field ? `${err.field}: ` : "") + err.message + ` (HTTP ${status})`;
  }
  if (body && typeof body.detail === "string") return `${body.detail} (HTTP ${status})`;
  return `HTTP ${status}`;
}

// fetch + JSON: {ok, status, data, error (the API's words), ms, headers}. Never throws.
export async function callApi(url, {method = "GET", body, token} = {}) {
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const t0 = performance.now();
  let resp;
  try {
    resp = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                             cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer"});
  } catch (e) {
    return {ok: false, status: 0, data: null, error: `could not reach the server (${e.message})`, ms: null};
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  const ms = performance.now() - t0;
  return {ok: resp.ok, status: resp.status, data, ms, headers: resp.headers,
          error: resp.ok ? null : apiErrorText(resp.status, data)};
}

export function fmt(v, digits = 2, suffix = "") {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return (typeof v === "number" ? v.toFixed(digits) : String(v)) + suffix;
}

export function pct(v) {
  return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`;
}

// A stable colour per element type (its index in the API's list of types).
export function typeColor(type, types) {
  const i = Math.max(0, types.indexOf(type));
  const hue = Math.round((i * 360) / Math.max(1, types.length) + 210) % 360;
  return `hsl(${hue}, 62%, 48%)`;
}

export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", {href: url, download: filename});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// The first value under `key` anywhere in a JSON-schema node (pydantic nests enums and bounds
// inside anyOf for optional fields).
export function findKey(node, key) {
  if (!node || typeof node !== "object") return undefined;
  if (Object.prototype.hasOwnProperty.call(node, key)) return node[key];
  for (const v of Object.values(node)) {
    const found = findKey(v, key);
    if (found !== undefined) return found;
  }
  return undefined;
}
