// The mlsd console: the page builds itself from /console/meta and polls /stats/series every 1.5 s.
// The admin token lives in `mlsd.token` only (never a URL, cookie or storage); every server string is
// shown through textContent. A system's panel registers hooks in `mlsd.panels` ({onResponse, onState}).
"use strict";
const mlsd = { token: null, meta: null, series: null, state: null, panels: [], drawn: {}, lastError: null };
window.mlsd = mlsd;
const $ = (id) => document.getElementById(id);
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

function showError(msg) { mlsd.lastError = msg; $("admin-error").textContent = msg || ""; }

async function post(path, body, admin) {
  const headers = { "content-type": "application/json" };
  if (admin && mlsd.token) headers.authorization = "Bearer " + mlsd.token;
  let r;
  try { r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body ?? {}) }); }
  catch (e) { showError(path + ": " + e); return { ok: false, status: 0, body: {} }; }
  const text = await r.text();
  let parsed = {};
  try { parsed = JSON.parse(text); } catch (e) { parsed = { message: text }; }
  return { ok: r.ok, status: r.status, body: parsed, headers: r.headers };
}

async function admin(path, body) {
  if (!mlsd.token) { showError("enter the admin token first (make demo printed it)"); return null; }
  const r = await post(path, body, true);
  if (!r.ok) { showError(r.status + " " + (r.body.error || "") + ": " + (r.body.message || "")); return null; }
  showError("");
  applyState(r.body);
  return r.body;
}

// ---------------------------------------------------------------- request form
function parseServerTiming(header) {
  return (header || "").split(",").map(p => p.trim()).filter(Boolean).map(p => {
    const [name, ...params] = p.split(";");
    const dur = params.map(x => x.trim()).find(x => x.startsWith("dur="));
    return [name.trim(), dur ? parseFloat(dur.slice(4)) : NaN];
  });
}

async function sendRequest(path, body) {
  const r = await post(path, body, false);
  const timings = parseServerTiming(r.headers && r.headers.get("server-timing"));
  $("timings").textContent = "HTTP " + r.status + " · " + timings.map(([n, v]) => n + " " + v.toFixed(2) + " ms").join(" · ");
  $("response").textContent = JSON.stringify(r.body, null, 2);
  for (const p of mlsd.panels) if (p.onResponse) p.onResponse(r, timings);
  return r;
}
mlsd.sendRequest = sendRequest;

// ---------------------------------------------------------------- knobs and faults from their JSON schemas
function fieldInput(name, prop, defs) {
  let spec = prop;
  if (prop.$ref) spec = defs[prop.$ref.split("/").pop()];
  if (prop.allOf && prop.allOf[0].$ref) spec = Object.assign({}, defs[prop.allOf[0].$ref.split("/").pop()], prop);
  let el;
  if (spec.enum) {
    el = document.createElement("select");
    for (const v of spec.enum) { const o = document.createElement("option"); o.value = v; o.textContent = v; el.append(o); }
    el.dataset.kind = "string";
  } else if (spec.type === "boolean") {
    el = document.createElement("input"); el.type = "checkbox"; el.dataset.kind = "boolean";
  } else if (spec.type === "integer" || spec.type === "number") {
    el = document.createElement("input"); el.type = "number"; el.dataset.kind = spec.type;
    el.step = spec.type === "integer" ? "1" : "any";
    // no min/max on the element: an out-of-range value goes to the server, which answers 422 and changes nothing
  } else {
    el = document.createElement("input"); el.type = "text"; el.dataset.kind = "string";
  }
  el.name = name; el.id = "set-" + name;
  return el;
}

function inputValue(el) {
  if (el.dataset.kind === "boolean") return el.checked;
  if (el.dataset.kind === "integer" || el.dataset.kind === "number") return el.value === "" ? null : Number(el.value);
  return el.value;
}

function buildSettings(containerId, what, section) {
  const box = $(containerId), schema = section.schema, defs = schema.$defs || {};
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const label = document.createElement("label");
    const span = document.createElement("span"); span.textContent = (prop.title || name);
    if (prop.description) span.title = prop.description;
    const el = fieldInput(name, prop, defs);
    el.addEventListener("change", () => admin("/admin/" + what, { [name]: inputValue(el) }).then(s => { if (!s) applyState(mlsd.state, true); }));
    label.append(span, el); box.append(label);
    const note = (mlsd.meta.notes || {})[name] || prop.description;
    if (note) { const p = document.createElement("div"); p.className = "note"; p.textContent = note; box.append(p); }
  }
}

function applyState(state, force) {
  if (!state || !state.knobs) return;
  mlsd.state = state;
  for (const [what, values] of [["knobs", state.knobs], ["faults", state.faults]]) {
    for (const [name, v] of Object.entries(values)) {
      const el = $("set-" + name);
      if (!el || (!force && document.activeElement === el)) continue;
      if (el.dataset.kind === "boolean") el.checked = !!v; else el.value = v;
      const defaults = mlsd.meta[what].defaults;
      el.parentElement.classList.toggle("changed", JSON.stringify(defaults[name]) !== JSON.stringify(v));
    }
  }
  const t = state.traffic;
  if (t) {
    $("traffic-status").textContent = (t.running ? "running at " + t.rate + "/s, " + t.remaining_s + " s left" : "stopped") +
      " · sent " + t.sent + ", ok " + t.ok + ", errors " + t.errors + ", dropped " + t.dropped +
      (t.last_error ? " · last error: " + t.last_error : "");
  }
  if (state.events) {
    const box = $("events"), shown = box.dataset.n ? Number(box.dataset.n) : 0;
    if (state.events.length !== shown || (state.events.length && box.firstChild && box.firstChild.dataset.ts !== String(state.events[state.events.length - 1].ts))) {
      box.replaceChildren();
      for (const e of state.events.slice().reverse()) {
        const li = document.createElement("li"); li.dataset.ts = e.ts;
        li.textContent = new Date(e.ts * 1000).toLocaleTimeString() + " " + e.text; box.append(li);
      }
      box.dataset.n = state.events.length;
    }
  }
  for (const p of mlsd.panels) if (p.onState) p.onState(state);
}

// ---------------------------------------------------------------- charts (plain canvas)
function drawChart(canvas, t, lines, unit) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 48, R = 8, T = 8, B = 18;
  ctx.clearRect(0, 0, W, H);
  let max = 0;
  for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const x = (i) => L + (W - L - R) * (t.length > 1 ? i / (t.length - 1) : 0);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  ctx.strokeStyle = "#e5e7eb"; ctx.fillStyle = "#6b7280"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = max * k / 4; ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText((v >= 10 ? v.toFixed(0) : v.toPrecision(2)) + (k === 4 ? " " + unit : ""), 2, y(v) + 4);
  }
  if (t.length) {
    const span = t[t.length - 1] - t[0];
    for (let k = 0; k <= 5; k++) ctx.fillText("-" + Math.round(span * (1 - k / 5)) + " s", L + (W - L - R) * k / 5 - 12, H - 4);
  }
  let points = 0;
  for (const l of lines) {
    ctx.strokeStyle = l.color; ctx.lineWidth = 1.6; ctx.setLineDash(l.dash ? [5, 3] : []);
    ctx.beginPath(); let pen = false;
    l.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      points++;
      if (pen) ctx.lineTo(x(i), y(v)); else { ctx.moveTo(x(i), y(v)); pen = true; }
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
  return points;
}

function legend(id, items) {
  const box = $(id); box.replaceChildren();
  for (const [label, color] of items) {
    const s = document.createElement("span"), i = document.createElement("i");
    i.style.background = color; s.append(i, document.createTextNode(label)); box.append(s);
  }
}

function lastValue(values) { for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i]; return null; }

function render(series) {
  const route = mlsd.meta.request.path, stages = series.latency[route] || {};
  const names = Object.keys(stages).sort((a, b) => (a === "total") - (b === "total"));
  const lines = [], items = [];
  names.forEach((s, k) => {
    const c = COLORS[k % COLORS.length];
    lines.push({ values: stages[s].p50, color: c }, { values: stages[s].p99, color: c, dash: true });
    const p50 = lastValue(stages[s].p50), p99 = lastValue(stages[s].p99);
    items.push([s + (p50 === null ? "" : " " + p50.toFixed(2) + " / " + p99.toFixed(2) + " ms"), c]);
  });
  mlsd.drawn.latency = drawChart($("chart-latency"), series.t, lines, "ms");
  legend("legend-latency", items);
  const gnames = mlsd.meta.gauges.length ? mlsd.meta.gauges : Object.keys(series.gauges);
  const glines = gnames.map((g, k) => ({ values: series.gauges[g] || series.t.map(() => null), color: COLORS[k % COLORS.length] }));
  mlsd.drawn.gauges = drawChart($("chart-gauges"), series.t, glines, "");
  legend("gauge-values", gnames.map((g, k) => {
    const v = lastValue(series.gauges[g] || []);
    return [g + (v === null ? " —" : " " + v.toFixed(3)), COLORS[k % COLORS.length]];
  }));
  const total = stages.total ? stages.total.rps : series.t.map(() => 0);
  mlsd.drawn.rps = drawChart($("chart-rps"), series.t, [{ values: total, color: "#111827" }], "/s");
}

async function poll() {
  try {
    const r = await fetch("/stats/series?window_s=300");
    if (r.ok) {
      mlsd.series = await r.json();
      render(mlsd.series);
      applyState(mlsd.series);
    }
    const ready = await fetch("/readyz"), body = await ready.json();
    const pill = $("ready");
    pill.textContent = ready.ok ? (body.degraded ? "degraded" : "ready") : "not ready: " + (body.message || "");
    pill.className = "pill " + (ready.ok ? (body.degraded ? "warn" : "ok") : "bad");
  } catch (e) { $("ready").textContent = "server unreachable"; $("ready").className = "pill bad"; }
}

// ---------------------------------------------------------------- wiring
async function main() {
  const r = await fetch("/console/meta");
  mlsd.meta = await r.json();
  $("request-path").textContent = "POST " + mlsd.meta.request.path;
  $("request-body").value = JSON.stringify(mlsd.meta.request.example, null, 2);
  $("interview-link").textContent = mlsd.meta.interview;
  $("traffic-rate").max = mlsd.meta.limits.max_rate; $("traffic-duration").max = mlsd.meta.limits.max_duration_s;
  buildSettings("knobs", "knobs", mlsd.meta.knobs);
  buildSettings("faults", "faults", mlsd.meta.faults);
  $("send-button").addEventListener("click", () => {
    let body;
    try { body = JSON.parse($("request-body").value); } catch (e) { showError("the request body is not JSON: " + e.message); return; }
    sendRequest(mlsd.meta.request.path, body);
  });
  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    mlsd.token = $("token").value.trim(); $("token").value = "";
    const ok = await admin("/admin/knobs", {});
    if (!ok) mlsd.token = null;
    $("token-state").textContent = ok ? "unlocked" : "locked"; $("token-state").className = "pill " + (ok ? "ok" : "bad");
  });
  $("reset-button").addEventListener("click", () => admin("/admin/reset", {}));
  $("traffic-start").addEventListener("click", () => admin("/admin/traffic/start",
    { rate: Number($("traffic-rate").value), duration_s: Number($("traffic-duration").value) }));
  $("traffic-stop").addEventListener("click", () => admin("/admin/traffic/stop", {}));
  for (const p of mlsd.panels) if (p.onMeta) p.onMeta(mlsd.meta);
  await poll();
  setInterval(poll, 1500);
}
document.addEventListener("DOMContentLoaded", main);
