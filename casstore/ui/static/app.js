/* casstore UI: column toggles, compare selection, SVG charts, verify progress.
   No dependencies; nothing is loaded from anywhere but this server. */
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const SVGNS = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

function ticks(lo, hi, n) {
  if (!(hi > lo)) { return [lo]; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return out;
}

/* series: [{name, color, xs, ys, points?}]; mode "line" or "scatter" */
function drawChart(container, series, opts) {
  opts = opts || {};
  container.textContent = "";
  const W = opts.width || 560, H = opts.height || 300, L = 64, R = 12, T = 12, B = 40;
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.xs.length; i++) {
      const x = s.xs[i], y = s.ys[i];
      if (y === null || !isFinite(x)) continue;
      if (x < xmin) xmin = x; if (x > xmax) xmax = x;
      if (y < ymin) ymin = y; if (y > ymax) ymax = y;
    }
  }
  if (xmin === Infinity) { container.textContent = "no data"; return; }
  if (xmin === xmax) { xmin -= 1; xmax += 1; }
  if (ymin === ymax) { ymin -= Math.abs(ymin) * 0.1 || 1; ymax += Math.abs(ymax) * 0.1 || 1; }
  const pad = (ymax - ymin) * 0.05; ymin -= pad; ymax += pad;
  const sx = x => L + (x - xmin) / (xmax - xmin) * (W - L - R);
  const sy = y => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "plot-svg", role: "img"}, container);
  const axes = el("g", {class: "axes"}, svg);
  for (const t of ticks(ymin, ymax, 5)) {
    el("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid"}, axes);
    const lab = el("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end"}, axes); lab.textContent = fmt(t);
  }
  for (const t of ticks(xmin, xmax, 6)) {
    el("line", {x1: sx(t), x2: sx(t), y1: H - B, y2: H - B + 4, class: "tick"}, axes);
    const lab = el("text", {x: sx(t), y: H - B + 16, "text-anchor": "middle"}, axes); lab.textContent = fmt(t);
  }
  el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}, axes);
  el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}, axes);
  if (opts.xlabel) { const t = el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "label"}, axes); t.textContent = opts.xlabel; }
  for (const s of series) {
    if (opts.mode === "scatter") {
      for (let i = 0; i < s.xs.length; i++) {
        if (s.ys[i] === null || !isFinite(s.xs[i])) continue;
        const c = el("circle", {cx: sx(s.xs[i]), cy: sy(s.ys[i]), r: 5, fill: s.color}, svg);
        const tt = el("title", {}, c); tt.textContent = `${s.name}: (${fmt(s.xs[i])}, ${fmt(s.ys[i])})`;
      }
      continue;
    }
    let d = "", pen = false;
    for (let i = 0; i < s.xs.length; i++) {
      if (s.ys[i] === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + sx(s.xs[i]).toFixed(1) + "," + sy(s.ys[i]).toFixed(1);
      pen = true;
    }
    const p = el("path", {d: d, fill: "none", stroke: s.color, "stroke-width": 1.5}, svg);
    const tt = el("title", {}, p); tt.textContent = s.name;
    if (s.xs.length === 1) el("circle", {cx: sx(s.xs[0]), cy: sy(s.ys[0]), r: 3, fill: s.color}, svg);
  }
  if (opts.mode !== "scatter") addReadout(container, svg, series, {W, L, R, T, B, H, xmin, xmax, sx, xlabel: opts.xlabel});
  if (series.length > 1 || opts.legend) addLegend(container, series);
}

function addLegend(container, series) {
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = s.color;
    item.appendChild(sw); item.appendChild(document.createTextNode(" " + s.name + (s.note ? " " + s.note : "")));
    legend.appendChild(item);
  }
  container.appendChild(legend);
}

/* one bar a run, for a metric each run logged once; its value written on it */
function drawBars(container, series) {
  container.textContent = "";
  const W = 560, L = 64, R = 12, T = 18, B = 40, H = 300;
  const vals = series.map(s => (s.ys.length && s.ys[0] !== null) ? s.ys[0] : null);
  const known = vals.filter(v => v !== null);
  if (!known.length) { container.textContent = "no data"; return; }
  let lo = Math.min(0, ...known), hi = Math.max(0, ...known);
  if (lo === hi) hi = lo + 1;
  const sy = y => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "plot-svg bars", role: "img"}, container);
  const axes = el("g", {class: "axes"}, svg);
  for (const t of ticks(lo, hi, 5)) {
    el("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid"}, axes);
    const lab = el("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end"}, axes); lab.textContent = fmt(t);
  }
  el("line", {x1: L, x2: W - R, y1: sy(0), y2: sy(0), class: "axis"}, axes);
  const slot = (W - L - R) / series.length, bw = Math.min(60, slot * 0.7);
  series.forEach((s, i) => {
    const v = vals[i], cx = L + slot * (i + 0.5);
    if (v === null) return;
    const rect = el("rect", {x: cx - bw / 2, width: bw, y: Math.min(sy(v), sy(0)), height: Math.max(1, Math.abs(sy(0) - sy(v))), fill: s.color}, svg);
    const tt = el("title", {}, rect); tt.textContent = `${s.name}: ${fmt(v)}`;
    const lab = el("text", {x: cx, y: (v >= 0 ? sy(v) - 4 : sy(v) + 12), "text-anchor": "middle", class: "value"}, svg);
    lab.textContent = fmt(v);
  });
  addLegend(container, series);
}

/* the index of the point of sorted xs nearest to x */
function nearest(xs, x) {
  let lo = 0, hi = xs.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}

/* hovering a line chart: a cursor line and, under the chart, each run's value at the nearest x */
function addReadout(container, svg, series, g) {
  const readout = document.createElement("div");
  readout.className = "readout small";
  readout.textContent = "\u00a0";
  container.appendChild(readout);
  const cursor = el("line", {y1: g.T, y2: g.H - g.B, class: "cursor", visibility: "hidden"}, svg);
  svg.addEventListener("mousemove", ev => {
    const box = svg.getBoundingClientRect();
    const vx = (ev.clientX - box.left) / box.width * g.W;
    const x = g.xmin + (vx - g.L) / (g.W - g.L - g.R) * (g.xmax - g.xmin);
    const parts = [];
    let at = null;
    for (const s of series) {
      if (!s.xs.length) continue;
      const i = nearest(s.xs, x);
      if (at === null || Math.abs(s.xs[i] - x) < Math.abs(at - x)) at = s.xs[i];
      parts.push(`${s.name}: ${s.ys[i] === null ? "-" : fmt(s.ys[i])}`);
    }
    if (at === null) return;
    cursor.setAttribute("x1", g.sx(at)); cursor.setAttribute("x2", g.sx(at)); cursor.setAttribute("visibility", "visible");
    readout.textContent = `${(g.xlabel || "x").split(" ")[0]} ${Number.isInteger(at) ? String(at) : fmt(at)} · ` + parts.join(" · ");
  });
  svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); readout.textContent = "\u00a0"; });
}

function runNames() {
  const names = {};
  document.querySelectorAll("#compare-table thead th a").forEach((a, i) => { names[i] = a.textContent; });
  return names;
}

async function loadChart(fig, x) {
  const runs = fig.dataset.runs.split(",");
  const params = new URLSearchParams();
  runs.forEach(r => params.append("run", r));
  params.set("key", fig.dataset.key);
  params.set("x", x);
  const plot = fig.querySelector(".plot");
  plot.textContent = "loading…";
  const resp = await fetch(fig.dataset.api + "?" + params.toString(), {headers: {accept: "application/json"}});
  if (!resp.ok) { plot.textContent = "could not load the chart (" + resp.status + ")"; return; }
  const data = await resp.json();
  const names = runNames();
  const series = data.series.filter(s => !s.missing).map((s) => {
    const i = runs.indexOf(s.run_id);
    return {name: names[i] || s.run_id.slice(0, 8), color: PALETTE[i % PALETTE.length], xs: s.xs, ys: s.ys,
            note: s.sampled ? `(${s.points} points, shown as ${s.xs.length})` : ""};
  });
  if (series.length > 1 && series.every(s => s.xs.length <= 1)) {
    drawBars(plot, series);  // one value a run (a final score): bars compare them, as MLflow's charts do
  } else {
    drawChart(plot, series, {xlabel: x === "time" ? "seconds since the first point" : "step", legend: series.some(s => s.note)});
  }
  fig.dataset.loaded = x;
}

function initCharts() {
  const figs = Array.from(document.querySelectorAll("figure.chart[data-key]"));
  if (!figs.length) return;
  const xOf = () => { const c = document.querySelector("input[name=xaxis]:checked"); return c ? c.value : "step"; };
  const load = () => figs.forEach(f => { if (f.dataset.loaded !== xOf()) loadChart(f, xOf()).catch(e => { f.querySelector(".plot").textContent = String(e); }); });
  document.querySelectorAll("input[name=xaxis]").forEach(r => r.addEventListener("change", load));
  load();
}

function initScatter() {
  const holder = document.getElementById("scatter-data");
  if (!holder) return;
  const runs = JSON.parse(holder.textContent);
  const xs = document.getElementById("scatter-x"), ys = document.getElementById("scatter-y");
  const pick = (r, sel) => { const [kind, key] = sel.split(/:(.*)/s); const v = (r[kind] || {})[key]; return v === undefined ? null : v; };
  function draw() {
    const plot = document.getElementById("scatter-plot");
    if (!xs.value || !ys.value) { plot.textContent = "needs a param or metric and a metric"; return; }
    let cats = null;
    const raw = runs.map(r => pick(r, xs.value));
    if (raw.some(v => v !== null && !isFinite(Number(v)))) {
      cats = Array.from(new Set(raw.filter(v => v !== null).map(String))).sort();
    }
    const series = runs.map((r, i) => {
      const xv = raw[i], yv = pick(r, ys.value);
      const xnum = xv === null ? NaN : (cats ? cats.indexOf(String(xv)) : Number(xv));
      return {name: r.name, color: PALETTE[i % PALETTE.length], xs: [xnum], ys: [yv === null ? null : Number(yv)]};
    });
    drawChart(plot, series, {mode: "scatter", legend: true,
      xlabel: xs.value.replace(":", ".") + (cats ? "  (" + cats.map((c, i) => i + "=" + c).join(", ") + ")" : "")});
  }
  xs.addEventListener("change", draw); ys.addEventListener("change", draw);
  draw();
}

function initColumns() {
  const table = document.getElementById("runs-table");
  if (!table) return;
  const hideField = document.getElementById("hide-field");
  const hidden = new Set((hideField.value || "").split(",").filter(Boolean));
  const apply = (col, hide) => {
    table.querySelectorAll("[data-col]").forEach(c => { if (c.dataset.col === col) c.classList.toggle("hidden", hide); });
  };
  document.querySelectorAll(".col-toggle").forEach(box => {
    box.addEventListener("change", () => {
      const col = box.dataset.col;
      if (box.checked) hidden.delete(col); else hidden.add(col);
      apply(col, !box.checked);
      hideField.value = Array.from(hidden).join(",");
      const url = new URL(window.location.href);
      if (hideField.value) url.searchParams.set("hide", hideField.value); else url.searchParams.delete("hide");
      history.replaceState(null, "", url.toString());
      table.querySelectorAll("thead a.sort").forEach(a => {
        const u = new URL(a.href);
        if (hideField.value) u.searchParams.set("hide", hideField.value); else u.searchParams.delete("hide");
        a.href = u.toString();
      });
    });
  });
  const button = document.getElementById("compare-button");
  const boxes = Array.from(table.querySelectorAll("input[name=run]"));
  const update = () => {
    const n = boxes.filter(b => b.checked).length;
    button.disabled = n < 2;
    button.textContent = n >= 2 ? `Compare ${n} runs` : "Compare selected";
  };
  boxes.forEach(b => b.addEventListener("change", update));
  update();
}

function initJob() {
  const job = document.getElementById("job");
  if (!job || job.dataset.finished === "yes") return;
  const stage = document.getElementById("job-stage"), count = document.getElementById("job-count"), bar = document.getElementById("job-bar");
  const poll = async () => {
    const resp = await fetch(job.dataset.api, {headers: {accept: "application/json"}});
    if (!resp.ok) { stage.textContent = "the server no longer knows this verification"; return; }
    const d = await resp.json();
    if (d.finished) { window.location.reload(); return; }
    stage.textContent = d.stage;
    count.textContent = d.total ? `${d.done} / ${d.total}` : String(d.done);
    if (d.total) { bar.max = d.total; bar.value = d.done; } else { bar.removeAttribute("value"); }
    setTimeout(poll, 500);
  };
  setTimeout(poll, 300);
}

function initSwatches() {
  document.querySelectorAll(".swatch[data-index]").forEach(s => { s.style.background = PALETTE[Number(s.dataset.index) % PALETTE.length]; });
  document.querySelectorAll(".print-button").forEach(b => b.addEventListener("click", () => window.print()));
}

document.addEventListener("DOMContentLoaded", () => {
  initColumns();
  initCharts();
  initScatter();
  initJob();
  initSwatches();
});
