// The operations page: polls GET /v1/admin/ops/snapshot every second with the
// admin token (kept in sessionStorage, so it ends with the tab) and draws plain
// SVG charts. No library, nothing fetched from elsewhere.
"use strict";

const KEY = "opsToken";
const EVERY_MS = 1000;
const W = 600, H = 120, PAD_L = 34, PAD_B = 4;
let timer = null;

const $ = (id) => document.getElementById(id);

function fmt(n, digits) {
  if (n === null || n === undefined) return "–";
  return Number(n).toFixed(digits === undefined ? 0 : digits);
}

function seconds(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1) return Math.round(n * 1000) + " ms";
  if (n < 120) return fmt(n, n < 10 ? 2 : 0) + " s";
  return Math.round(n / 60) + " min";
}

function setStatus(text, error) {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : "";
}

// Draws each series (arrays of numbers or nulls) into `svg` as polylines on one
// scale, whose top is at least `minTop` (so an all-zero chart reads 0..1, not 0..1e-9).
function chart(svg, series, minTop) {
  const all = series.flat().filter((v) => v !== null && v !== undefined);
  const max = Math.max(minTop === undefined ? 1 : minTop, ...all);
  const top = niceCeil(max);
  const n = Math.max(1, ...series.map((s) => s.length)) - 1 || 1;
  const x = (i) => PAD_L + (i / n) * (W - PAD_L);
  const y = (v) => H - PAD_B - (v / top) * (H - PAD_B - 8);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    const yy = y(top * f);
    parts.push(`<line class="grid" x1="${PAD_L}" x2="${W}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="axis" x="2" y="${yy + 3}">${label(top * f)}</text>`);
  }
  series.forEach((s, k) => {
    // Break the line where a value is missing (no settled job in that window).
    let run = [];
    const flush = () => {
      if (run.length) parts.push(`<polyline class="s${k + 1}" points="${run.join(" ")}"/>`);
      run = [];
    };
    s.forEach((v, i) => {
      if (v === null || v === undefined) flush();
      else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  });
  svg.innerHTML = parts.join("");
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function label(v) {
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k";
  if (v >= 10 || v === 0) return v.toFixed(0);
  return v.toPrecision(2);
}

// The window is 10 minutes; a stack that just started has a long flat prefix.
// Charts start at the first second with any data, showing at least the last minute.
function trimmed(series) {
  const keys = Object.keys(series).filter((k) => k !== "at");
  const len = series.at.length;
  let first = len;
  for (const k of keys) {
    const i = series[k].findIndex((v) => v !== null && v !== 0);
    if (i >= 0 && i < first) first = i;
  }
  const from = Math.max(0, Math.min(first, len - 60));
  const out = {};
  for (const k of Object.keys(series)) out[k] = series[k].slice(from);
  return out;
}

function render(s) {
  $("waiting").textContent = fmt(s.line.waiting);
  $("active").textContent = fmt(s.line.active);
  $("admissions").textContent = fmt(s.line.admissionsPerSecond, 1);
  $("eta").textContent = seconds(s.line.lastInLineEtaSeconds);
  $("succeeded").textContent = fmt(s.jobs.succeededPerSecond, 1);
  $("failed").textContent = fmt(s.jobs.failedPerSecond, 1);
  $("retried").textContent = fmt(s.jobs.retriedPerSecond, 1);
  $("p50").textContent = seconds(s.jobs.settleP50Seconds);
  $("p99").textContent = seconds(s.jobs.settleP99Seconds);
  $("errors").textContent = fmt(s.errors.perSecond, 1);
  for (const d of s.errors.dependencies) {
    const el = $("dep-" + d.dependency);
    if (el) el.textContent = fmt(d.count);
  }
  const rows = s.queues.map((q) =>
    `<tr data-queue="${q.queue}"><td>${q.queue}</td><td>${q.waiting}</td><td>${q.scheduled}</td><td>${q.running}</td></tr>`);
  $("queues").innerHTML = rows.join("");
  const t = trimmed(s.series);
  chart($("chart-line"), [t.waiting, t.active]);
  chart($("chart-admitted"), [t.admitted]);
  chart($("chart-queued"), [t.queued]);
  chart($("chart-jobs"), [t.succeeded, t.failed, t.retried]);
  chart($("chart-settle"), [t.settleP50, [], t.settleP99], 0.01);
  chart($("chart-errors"), [t.errors]);
  $("updated").textContent = new Date(s.at * 1000).toLocaleTimeString();
  document.body.dataset.at = String(s.at);
}

async function tick() {
  const token = sessionStorage.getItem(KEY);
  if (!token) return;
  try {
    const resp = await fetch("/v1/admin/ops/snapshot", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
    });
    if (resp.status === 401) {
      setStatus("The admin token was refused.", true);
      return; // stop polling until a new token is given
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    setStatus("Live, refreshing every second.", false);
  } catch (e) {
    setStatus("Cannot load the snapshot (" + e.message + "); retrying.", true);
  }
  timer = setTimeout(tick, EVERY_MS);
}

function start() {
  clearTimeout(timer);
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem(KEY) || "";
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    start();
  });
  start();
});
