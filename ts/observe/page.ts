/**
 * The status page served at `/` of the metrics listener: one static HTML document with an
 * inline script (no framework, no build step) that polls `/status.json` every second and
 * draws the backlog and drain rate of the last minutes as inline SVG. Everything taken
 * from the hub is written with `textContent` or as SVG numbers, never as markup.
 */

/** The page; the same bytes for every request. */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgehub status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 1rem; }
  h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
  .tiles { display: flex; flex-wrap: wrap; gap: .8rem; }
  .tile { border: 1px solid #ccc; border-radius: 6px; padding: .5rem .8rem; min-width: 9rem; }
  .tile b { display: block; font-size: 1.3rem; }
  .online { color: #17803d; } .offline { color: #b42318; } .none { color: #555; }
  svg { border: 1px solid #ddd; background: #fafafa; width: 100%; max-width: 720px; height: 180px; }
  table { border-collapse: collapse; } td, th { padding: .15rem .6rem; text-align: left; border-bottom: 1px solid #eee; }
  #error { color: #b42318; }
</style>
</head>
<body>
<h1>edgehub <span id="role"></span></h1>
<p id="error"></p>
<div class="tiles">
  <div class="tile">parent link <b id="link" class="none">…</b><span id="since"></span></div>
  <div class="tile">backlog (messages) <b id="backlog">…</b><span id="backlog-bytes"></span></div>
  <div class="tile">drain (msg/s) <b id="drain">…</b><span id="eta"></span></div>
  <div class="tile">quota used <b id="quota">…</b></div>
  <div class="tile">clients <b id="clients">…</b></div>
  <div class="tile">expired / dropped / dead-lettered <b id="counters">…</b></div>
</div>
<h2>Backlog <span style="color:#1f6feb">(messages)</span> and drain rate <span style="color:#d97706">(msg/s)</span>, last minutes</h2>
<svg id="chart" viewBox="0 0 720 180" preserveAspectRatio="none" role="img" aria-label="backlog and drain rate">
  <g id="offline-bands"></g>
  <polyline id="backlog-line" fill="none" stroke="#1f6feb" stroke-width="2" points=""></polyline>
  <polyline id="drain-line" fill="none" stroke="#d97706" stroke-width="1.5" points=""></polyline>
</svg>
<p id="scale"></p>
<h2>Backlog by queue</h2>
<table><thead><tr><th>queue</th><th>messages</th><th>bytes</th><th>oldest</th></tr></thead><tbody id="queues"></tbody></table>
<h2>Connected clients</h2>
<ul id="client-ids"></ul>
<h2>Recent dead letters</h2>
<table><thead><tr><th>when</th><th>from queue</th><th>reason</th><th>bytes</th></tr></thead><tbody id="dead"></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const W = 720, H = 180;
function age(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  return s < 120 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
}
function bytes(n) {
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
}
function rows(tbody, list, cells) {
  tbody.replaceChildren(...list.map((item) => {
    const tr = document.createElement("tr");
    for (const c of cells(item)) { const td = document.createElement("td"); td.textContent = String(c); tr.append(td); }
    return tr;
  }));
}
function draw(samples) {
  const t0 = samples.length ? samples[0].t : 0, t1 = samples.length ? samples[samples.length - 1].t : 1;
  const span = Math.max(1, t1 - t0);
  const x = (t) => ((t - t0) / span) * W;
  const rates = samples.map((s, i) => {
    const p = samples[i - 1];
    if (!p || s.t === p.t) return 0;
    const appended = Math.max(0, s.appended - p.appended);
    return Math.max(0, appended - (s.messages - p.messages)) / ((s.t - p.t) / 1000);
  });
  const maxB = Math.max(1, ...samples.map((s) => s.messages));
  const maxR = Math.max(1, ...rates);
  $("backlog-line").setAttribute("points", samples.map((s) => x(s.t).toFixed(1) + "," + (H - 4 - (s.messages / maxB) * (H - 8)).toFixed(1)).join(" "));
  $("drain-line").setAttribute("points", samples.map((s, i) => x(s.t).toFixed(1) + "," + (H - 4 - (rates[i] / maxR) * (H - 8)).toFixed(1)).join(" "));
  const bands = [];
  for (let i = 0; i < samples.length; i++) {
    if (samples[i].online !== false) continue;
    const next = samples[i + 1];
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    r.setAttribute("x", x(samples[i].t).toFixed(1)); r.setAttribute("y", "0");
    r.setAttribute("width", Math.max(1, next ? x(next.t) - x(samples[i].t) : 2).toFixed(1)); r.setAttribute("height", String(H));
    r.setAttribute("fill", "#fde2e1");
    bands.push(r);
  }
  $("offline-bands").replaceChildren(...bands);
  $("scale").textContent = "top of chart: " + maxB + " messages, " + maxR.toFixed(1) + " msg/s; shaded: parent offline; " + Math.round(span / 60000) + " min shown";
}
async function refresh() {
  try {
    const r = await fetch("status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("status.json answered " + r.status);
    const { status: s, samples } = await r.json();
    $("error").textContent = "";
    $("role").textContent = "(" + s.role + (s.parent ? ", parent " + s.parent.hostname : "") + ")";
    $("link").textContent = s.link.state;
    $("link").className = s.link.state;
    $("since").textContent = s.link.since ? "since " + new Date(s.link.since).toLocaleTimeString() : "";
    $("backlog").textContent = String(s.backlog.messages);
    $("backlog-bytes").textContent = bytes(s.backlog.bytes) + (s.backlog.oldestAgeMs !== null ? ", oldest " + age(s.backlog.oldestAgeMs) : "");
    $("drain").textContent = s.drain.outPerSec + " out / " + s.drain.inPerSec + " in";
    $("eta").textContent = s.drain.etaSecs === null ? "not shrinking" : s.drain.etaSecs === 0 ? "empty" : "empty in " + age(s.drain.etaSecs * 1000);
    $("quota").textContent = s.quota.usedPercent + " %";
    $("clients").textContent = String(s.clients.connected);
    $("counters").textContent = s.counters.expired + " / " + s.counters.dropped + " / " + s.counters.deadLettered;
    rows($("queues"), s.backlog.queues, (q) => [q.queue, q.messages, bytes(q.bytes), age(q.oldestAgeMs)]);
    $("client-ids").replaceChildren(...s.clients.ids.map((id) => { const li = document.createElement("li"); li.textContent = id; return li; }));
    rows($("dead"), s.deadLetters, (d) => [new Date(d.at).toLocaleString(), d.queue, d.reason, d.bodyBytes]);
    draw(samples);
  } catch (err) {
    $("error").textContent = "cannot read the hub's status: " + err.message;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
