// The Operations page: polls the figures (cirweb/operations/views.py) every few seconds and draws them. Turns and
// latency come with their last 30 minutes; queue depth and workers are read now, so the page keeps their history
// since it opened. A file, not inline: the admin's CSP allows no inline script.
import { bars, lines } from "./charts.js";

const root = document.getElementById("content-main");
const HISTORY = 60; // samples of queue depth and workers kept (5 minutes at one every 5 s)
const samples = [];

const byId = (id) => document.getElementById(id);

// Milliseconds as people read them: "96 ms", "2.1 s".
function ms(value) {
  if (value === null || value === undefined) return "-";
  return value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

function pair(counts) {
  return counts ? `search ${counts.search ?? 0} · index ${counts.index ?? 0}` : "unreadable (Redis?)";
}

function headline(f) {
  const recent = f.recent;
  byId("ops-rate").textContent = String(recent.turns_per_minute);
  byId("ops-p50").textContent = ms(recent.p50_ms);
  byId("ops-p99").textContent = ms(recent.p99_ms);
  byId("ops-queued").textContent = pair(f.queues);
  byId("ops-workers").textContent = pair(f.workers);
  byId("ops-failed").textContent = `${recent.failed} of ${recent.done + recent.failed}`;
}

function charts(f) {
  const minutes = f.minutes;
  const labels = minutes.map((m) => m.label);
  const last = minutes[minutes.length - 1];
  bars(byId("ops-turns"), minutes.map((m) => ({ label: m.label, values: [m.done, m.failed], partial: m.partial })),
    ["ops-done", "ops-failed"],
    `Turns per minute over the last ${f.window_minutes} minutes; this minute so far: ${last.done} answered, ${last.failed} failed`);
  lines(byId("ops-latency"), labels,
    [{ values: minutes.map((m) => m.p50_ms), cls: "ops-p50" }, { values: minutes.map((m) => m.p99_ms), cls: "ops-p99" }],
    `Latency by minute; last five minutes: p50 ${ms(f.recent.p50_ms)}, p99 ${ms(f.recent.p99_ms)}`, ms);
  samples.push({ label: f.read_at.slice(0, 5), queues: f.queues, workers: f.workers });
  if (samples.length > HISTORY) samples.shift();
  const at = samples.map((s) => s.label);
  const series = (key, kind) => samples.map((s) => (s[key] ? s[key][kind] ?? 0 : null));
  const every = Math.max(1, Math.ceil(samples.length / 6));
  lines(byId("ops-queues"), at, [{ values: series("queues", "search"), cls: "ops-search" }, { values: series("queues", "index"), cls: "ops-index" }],
    `Messages waiting now: ${pair(f.queues)}`, String, every);
  lines(byId("ops-workers-chart"), at, [{ values: series("workers", "search"), cls: "ops-search" }, { values: series("workers", "index"), cls: "ops-index" }],
    `Workers answering now: ${pair(f.workers)}`, String, every);
}

function cell(text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.append(a);
  } else {
    td.textContent = text;
  }
  return td;
}

function failures(list) {
  const body = byId("ops-failures");
  if (!list.length) {
    const row = document.createElement("tr");
    const none = cell("None.");
    none.colSpan = 5;
    row.append(none);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...list.map((f) => {
    const row = document.createElement("tr");
    row.append(cell(f.when), cell(`turn ${f.turn}`, f.url), cell(f.code), cell(f.error), cell(f.request));
    return row;
  }));
}

async function poll() {
  const status = byId("ops-status");
  try {
    const response = await fetch(root.dataset.figures, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok || !(response.headers.get("Content-Type") || "").includes("json")) {
      status.textContent = "The figures could not be read (signed out?); reload the page.";
      return;
    }
    const figures = await response.json();
    headline(figures);
    charts(figures);
    failures(figures.failures);
    status.textContent = `Read at ${figures.read_at}; every ${figures.poll_seconds} s.`;
  } catch (error) {
    status.textContent = "The server did not answer; trying again.";
  }
}

poll();
setInterval(poll, Number(root.dataset.poll || 5) * 1000);
