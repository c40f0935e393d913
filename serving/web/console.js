// The rollout console: polls GET /admin/rollout (state, decisions) and GET /admin/stats (per-version
// window numbers, the ones the judge decides on) and calls the rollout actions. The admin token
// lives in one variable of this module: never in storage, a cookie or a URL, and it is sent only
// in the Authorization header of these same-origin calls.

import {callApi, el, fmt, pct} from "./common.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1500;
const ACTIVE = ["running", "paused"];
let token = null;
let timer = null;
let inflight = null;
let status = null;

// ----------------------------------------------------------------------------- token

function forget(message) {
  token = null;
  clearTimeout(timer);
  $("console").hidden = true;
  $("token-form").hidden = false;
  $("connection").textContent = "";
  $("token-error").textContent = message || "";
  $("token").focus();
}

async function connect(ev) {
  ev.preventDefault();
  const given = $("token").value.trim();
  $("token").value = "";  // the field does not keep it either
  if (!given) { $("token-error").textContent = "enter the admin token"; return; }
  token = given;
  $("token-error").textContent = "";
  await refresh();
  if (token) {
    $("token-form").hidden = true;
    $("console").hidden = false;
  }
}

// ----------------------------------------------------------------------------- polling

function refresh() {
  if (!inflight) inflight = poll().finally(() => { inflight = null; });
  return inflight;
}

async function poll() {
  clearTimeout(timer);
  if (!token) return;
  const [ro, st] = await Promise.all([callApi("admin/rollout", {token}), callApi("admin/stats", {token})]);
  if (!token) return;
  if (ro.status === 401 || st.status === 401) { forget(ro.error || st.error); return; }
  if (ro.ok) renderRollout(ro.data);
  if (st.ok) renderStats(st.data);
  $("connection").textContent = ro.ok && st.ok ? `updated ${new Date().toLocaleTimeString()}`
                                               : `not updated: ${ro.error || st.error}`;
  timer = setTimeout(refresh, POLL_MS);
}

// ----------------------------------------------------------------------------- rendering

function badge(text) {
  return el("span", {class: `badge ${text}`}, text.replace("_", " "));
}

function item(label, value, id) {
  return el("span", {}, `${label} `, el("b", {id}, value));
}

function renderRollout(data) {
  const s = data.state;
  status = s.status;
  const active = ACTIVE.includes(s.status);
  const stepText = active ? `${s.step} % (${s.step_index + 1} of ${s.steps.length}: ${s.steps.join(", ")})` : "–";
  $("status-line").replaceChildren(
    el("span", {id: "status", "data-status": s.status}, badge(s.status)),
    item("stable", s.stable, "stable-slot"), item("canary", s.canary),
    item("step", stepText), item("failed windows", `${s.failed_windows} / ${s.max_failed_windows}`),
    item("window", `${fmt(s.interval_s, 0)} s`), s.rollout_id ? item("rollout", s.rollout_id) : null);
  $("start").disabled = active;
  $("pause").disabled = !active;
  $("pause").textContent = s.status === "paused" ? "Resume" : "Pause";
  $("promote").disabled = !active;
  $("abort").disabled = !active;
  $("timeline").replaceChildren(...[...(data.audit || [])].reverse().map(decisionItem));
}

function decisionItem(d) {
  const when = d.time ? new Date(d.time).toLocaleTimeString() : "";
  const weights = Object.entries(d.weights || {}).map(([slot, w]) => `${slot} ${fmt(w, 0)} %`).join(" / ");
  const signals = (d.measured && d.measured.failed_signals) || [];
  return el("li", {class: "decision", "data-decision": d.decision},
    el("span", {class: "when"}, when), badge(d.decision), ` step ${d.step ?? "–"} % · ${weights}`,
    el("span", {class: "reason"}, d.reason || ""),
    signals.length ? el("span", {class: "signals"}, `failed: ${signals.join(", ")}`) : null);
}

// A value outside the judge's own absolute limits is shown in red (the comparisons with
// stable are the judge's to make; its reasons are in the timeline).
function stat(label, value, bad, key) {
  return el("div", {}, el("dt", {}, label), el("dd", {class: bad ? "bad" : null, "data-stat": key}, value));
}

function versionCard(v, th) {
  const weight = Number(v.weight) || 0;
  const bar = el("span", {});
  bar.style.width = `${Math.max(0, Math.min(100, weight))}%`;  // CSSOM, allowed by the page's CSP
  const pairsEnough = v.agreement_pairs >= (th.min_agreement_pairs || 1);
  return el("article", {class: "version", "data-slot": v.slot, "data-role": v.role},
    el("h3", {}, v.slot, badge(v.role)),
    el("code", {class: "model", title: "model id"}, v.model || "(not reported)"),
    el("div", {class: "weight"}, el("span", {class: "weight-value"}, `${fmt(weight, 0)} %`),
       el("span", {class: "bar"}, bar)),
    el("dl", {class: "stats"},
      stat("req/s", fmt(v.rate_per_s, 2), false, "rate"),
      stat("requests", String(v.requests), false, "requests"),
      stat("error rate", pct(v.error_rate), v.error_rate > th.max_error_rate, "error_rate"),
      stat("errors", String(v.errors), false, "errors"),
      stat("P50", fmt(v.p50_ms, 1, " ms"), false, "p50"),
      stat("P95", fmt(v.p95_ms, 1, " ms"), v.p95_ms > th.max_p95_ms, "p95"),
      stat("valid", pct(v.valid_share), v.valid_share !== null && v.valid_share < th.min_valid_share, "valid"),
      stat("overlap", fmt(v.overlap, 3), false, "overlap"),
      stat("alignment", fmt(v.alignment, 3), false, "alignment"),
      stat("agreement", v.agreement_pairs ? `${fmt(v.agreement, 2)} (${v.agreement_pairs})` : "–",
           pairsEnough && v.agreement !== null && v.agreement < th.min_agreement, "agreement")));
}

function renderStats(data) {
  const w = data.window;
  $("window-note").textContent = `over the open analysis window (${fmt(w.age_s, 0)} s${w.judged ? "" : ", no rollout"})`;
  $("versions").replaceChildren(...data.versions.map((v) => versionCard(v, data.thresholds || {})));
}

// ----------------------------------------------------------------------------- actions

async function act(path, body, what) {
  $("action-error").textContent = "";
  $("action-note").textContent = `${what}…`;
  const r = await callApi(`admin/rollout/${path}`, {method: "POST", body, token});
  if (r.status === 401) { forget(r.error); return; }
  if (!r.ok) {
    $("action-note").textContent = "";
    $("action-error").textContent = r.error;
  } else {
    const d = r.data.state.last_decision || {};
    $("action-note").textContent = `${d.decision || what}: ${d.reason || "done"}`;
  }
  await pollAfter(inflight);
}

// A poll already in flight may have read the stats before the action: wait it out, then read
// the rollout and the stats again, so that status and weights on screen come from one moment.
async function pollAfter(pending) {
  if (pending) await pending;
  return refresh();
}

function startBody() {
  const body = {steps: $("steps").value.trim()};
  const canary = $("canary").value.trim();
  if (canary) body.canary = canary;
  for (const [id, key] of [["interval", "interval"], ["min-requests", "min_requests"], ["max-p95", "max_p95_ms"],
                           ["max-error-rate", "max_error_rate"]]) {
    if ($(id).value.trim() !== "") body[key] = Number($(id).value);
  }
  return body;
}

function init() {
  $("token-form").addEventListener("submit", connect);
  $("forget").addEventListener("click", () => forget(""));
  $("start-form").addEventListener("submit", (ev) => { ev.preventDefault(); act("start", startBody(), "start"); });
  $("pause").addEventListener("click", () => (status === "paused" ? act("resume", undefined, "resume")
                                                                   : act("pause", undefined, "pause")));
  $("promote").addEventListener("click", () => {
    if (confirm("Make the canary the stable version (100 % of traffic)?")) act("promote", undefined, "promote");
  });
  $("abort").addEventListener("click", () => {
    if (confirm("Abort the rollout: all traffic back to stable?")) act("rollback", undefined, "abort");
  });
  document.body.dataset.ready = "1";
}

init();
