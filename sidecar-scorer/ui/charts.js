// Charts drawn as inline SVG from the API's figures: time series with bounds, interval
// (forest) plots, a share against its threshold, and a strip of outcomes. Every chart
// has a caption with its unit and a legend; its numbers are also in the tables beside it.

import { h, s } from "./dom.js";
import { clock } from "./format.js";

/** Colours of the variants, in the rollout's order (the baseline first). */
export const PALETTE = ["#4c78a8", "#e8853a", "#54a24b", "#b279a2", "#d6604d", "#72b7b2", "#9d755d", "#bab0ac"];

export const OUTCOME_COLOURS = {
  passed: "#54a24b",
  failed: "#d6604d",
  inconclusive: "#c9a227",
};

const WIDTH = 600;
const MARGIN = { left: 58, right: 14, top: 12, bottom: 26 };

/** About `n` round tick values covering [lo, hi]. */
function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A legend's key: a small line in the series' colour, dashed like the series. */
export function swatch(color, dashed) {
  return s(
    "svg",
    { class: "swatch", viewBox: "0 0 18 10", width: 18, height: 10, "aria-hidden": "true" },
    s("line", { x1: 1, x2: 17, y1: 5, y2: 5, stroke: color, "stroke-width": 3, "stroke-dasharray": dashed ? "4 3" : null }),
  );
}

/** Round times between `from` and `to` (ms), about `n` of them. */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((sec) => sec * 1000);

function timeTicks(from, to, n) {
  const step = TIME_STEPS.find((st) => st >= (to - from) / n) || Math.ceil((to - from) / n / 86400000) * 86400000;
  const out = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) out.push(t);
  return { ticks: out, step };
}

function legend(items) {
  return h("div", { class: "legend" }, items.map((item) => h("span", { class: "key" }, swatch(item.color, item.dashed), item.name)));
}

/**
 * A chart over time. `series`: [{name, color, points: [[ms, value|null]], step, dashed}];
 * `bounds`: [{value, label}] drawn as dashed lines; `incompleteFrom`: data after this
 * time may still grow, and is shaded. `format(v)` writes a tick; `unit` is in the caption;
 * the value axis spans at least `minSpan`.
 */
export function timeChart({ title, unit, series, from, to, format, bounds = [], incompleteFrom, yMin, yMax, minSpan = 1e-9, height = 170, width = WIDTH, name }) {
  const values = series.flatMap((sr) => sr.points.map((p) => p[1])).filter((v) => Number.isFinite(v));
  const limits = bounds.map((b) => b.value).filter((v) => Number.isFinite(v));
  let lo = yMin ?? Math.min(0, ...values, ...limits);
  // At least `minSpan` tall: a flat line of zeros still gets readable ticks.
  let hi = yMax ?? Math.max(...values, ...limits, lo + minSpan);
  if (yMax === undefined && hi > lo) hi += (hi - lo) * 0.08;
  if (!(hi > lo)) hi = lo + 1;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const x = (t) => MARGIN.left + ((t - from) / Math.max(1, to - from)) * plotW;
  const y = (v) => MARGIN.top + plotH - ((v - lo) / (hi - lo)) * plotH;
  const parts = [];

  if (Number.isFinite(incompleteFrom) && incompleteFrom < to) {
    const x0 = Math.max(MARGIN.left, x(incompleteFrom));
    parts.push(s("rect", { class: "incomplete", x: x0, y: MARGIN.top, width: MARGIN.left + plotW - x0, height: plotH }, s("title", null, "windows still arriving")));
  }
  for (const v of ticks(lo, hi, 4)) {
    parts.push(s("line", { class: "gridline", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: y(v), y2: y(v) }));
    parts.push(s("text", { class: "tick", x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const times = timeTicks(from, to, 4);
  for (const t of times.ticks) {
    // A label at the right edge would be cut off.
    if (x(t) > MARGIN.left + plotW - 20) continue;
    const label = times.step < 60000 ? clock(t) : clock(t).slice(0, 5);
    parts.push(s("text", { class: "tick", x: x(t), y: height - 8, "text-anchor": "middle" }, label));
  }
  parts.push(s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH }));

  for (const b of bounds) {
    if (!Number.isFinite(b.value)) continue;
    parts.push(s("line", { class: "bound", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: y(b.value), y2: y(b.value) }));
    parts.push(s("text", { class: "bound-label", x: MARGIN.left + plotW - 2, y: y(b.value) - 4, "text-anchor": "end" }, `${b.label} ${format(b.value)}`));
  }

  for (const sr of series) {
    let d = "";
    let pen = false;
    let last = null;
    for (const [t, v] of sr.points) {
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      if (pen && sr.step && last !== null) d += `L${x(t).toFixed(1)},${y(last).toFixed(1)}`;
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      last = v;
    }
    if (d) parts.push(s("path", { class: `line ${sr.dashed ? "dashed" : ""}`, d, stroke: sr.color }));
    if (sr.marks) {
      for (const [t, v, colour, note] of sr.points) {
        if (!Number.isFinite(v)) continue;
        parts.push(s("circle", { cx: x(t), cy: y(v), r: 3.2, fill: colour || sr.color, stroke: "#fff", "stroke-width": 1 }, note ? s("title", null, note) : null));
      }
    }
  }

  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title} (${unit})` }, parts);
  const items = series.map((sr) => ({ name: sr.name, color: sr.color, dashed: sr.dashed }));
  return h("figure", { class: "chart", "data-chart": name || title }, h("figcaption", null, title, h("span", { class: "unit" }, ` (${unit})`)), svg, legend(items));
}

/**
 * Intervals with their point estimates, one row each, around a zero line:
 * rows = [{label, low, mid, high, effect}], in the chart's unit (`format` writes a tick).
 */
export function forestPlot({ title, unit, rows, format, name, width = 900 }) {
  const rowH = 26;
  const left = 190;
  const height = MARGIN.top + rows.length * rowH + MARGIN.bottom;
  const values = rows.flatMap((r) => [r.low, r.mid, r.high]).filter((v) => Number.isFinite(v));
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  const pad = (hi - lo || 1) * 0.08;
  lo -= pad;
  hi += pad;
  const plotW = width - left - MARGIN.right;
  const x = (v) => left + ((v - lo) / (hi - lo)) * plotW;
  const parts = [];
  for (const v of ticks(lo, hi, 5)) {
    parts.push(s("line", { class: "gridline", x1: x(v), x2: x(v), y1: MARGIN.top, y2: height - MARGIN.bottom }));
    parts.push(s("text", { class: "tick", x: x(v), y: height - 8, "text-anchor": "middle" }, format(v)));
  }
  parts.push(s("line", { class: "zero", x1: x(0), x2: x(0), y1: MARGIN.top - 4, y2: height - MARGIN.bottom }));
  rows.forEach((r, i) => {
    const cy = MARGIN.top + i * rowH + rowH / 2;
    const colour = r.effect === "better" ? "#3b8f3a" : r.effect === "worse" ? "#c8453a" : "#6b7280";
    parts.push(s("text", { class: "row-label", x: left - 10, y: cy + 4, "text-anchor": "end" }, r.label));
    if (Number.isFinite(r.low) && Number.isFinite(r.high)) {
      parts.push(s("line", { x1: x(r.low), x2: x(r.high), y1: cy, y2: cy, stroke: colour, "stroke-width": 2.5, "stroke-linecap": "round" }));
    }
    if (Number.isFinite(r.mid)) {
      parts.push(s("circle", { cx: x(r.mid), cy, r: 4.5, fill: colour }, s("title", null, `${r.label}: ${format(r.mid)} [${format(r.low)}, ${format(r.high)}]`)));
    }
  });
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title} (${unit})` }, parts);
  return h(
    "figure",
    { class: "chart", "data-chart": name || title },
    h("figcaption", null, title, h("span", { class: "unit" }, ` (${unit})`)),
    svg,
    legend([
      { name: "better", color: "#3b8f3a" },
      { name: "worse", color: "#c8453a" },
      { name: "not significant", color: "#6b7280" },
    ]),
  );
}

/**
 * A share with its interval against a threshold: `min` (must be at least) or `max`
 * (must be at most). The scale zooms to where the figures are.
 */
export function shareMeter({ label, rate, low, high, threshold, kind, format }) {
  const height = 46;
  const left = 150;
  const values = [rate, low, high, threshold].filter((v) => Number.isFinite(v));
  let lo = Math.max(0, Math.min(...values, 1) - 0.02);
  let hi = Math.min(1, Math.max(...values, 0) + 0.02);
  if (!(hi > lo)) {
    lo = 0;
    hi = 1;
  }
  const plotW = WIDTH - left - MARGIN.right;
  const x = (v) => left + ((v - lo) / (hi - lo)) * plotW;
  const cy = 18;
  const ok = !Number.isFinite(rate) || !Number.isFinite(threshold) ? null : kind === "min" ? rate >= threshold : rate <= threshold;
  const colour = ok === null ? "#6b7280" : ok ? "#3b8f3a" : "#c8453a";
  const parts = [
    s("text", { class: "row-label", x: left - 10, y: cy + 4, "text-anchor": "end" }, label),
    s("line", { class: "track", x1: left, x2: left + plotW, y1: cy, y2: cy }),
  ];
  for (const v of ticks(lo, hi, 4)) parts.push(s("text", { class: "tick", x: x(v), y: height - 4, "text-anchor": "middle" }, format(v)));
  if (Number.isFinite(low) && Number.isFinite(high)) {
    parts.push(s("line", { x1: x(low), x2: x(high), y1: cy, y2: cy, stroke: colour, "stroke-width": 6, "stroke-linecap": "round", opacity: 0.45 }));
  }
  if (Number.isFinite(threshold)) {
    parts.push(s("line", { class: "bound", x1: x(threshold), x2: x(threshold), y1: cy - 11, y2: cy + 11 }, s("title", null, `${kind} ${format(threshold)}`)));
    parts.push(s("text", { class: "bound-label", x: x(threshold) + 4, y: cy - 6 }, `${kind} ${format(threshold)}`));
  }
  if (Number.isFinite(rate)) parts.push(s("circle", { cx: x(rate), cy, r: 5, fill: colour }, s("title", null, format(rate))));
  return s("svg", { class: "meter", viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": label }, parts);
}

/** One square per run, oldest first, coloured by its outcome. */
export function outcomeStrip(runs, describe) {
  const size = 14;
  const gap = 3;
  const perRow = Math.floor((WIDTH + gap) / (size + gap));
  const rowsNeeded = Math.max(1, Math.ceil(runs.length / perRow));
  const height = rowsNeeded * (size + gap);
  const parts = runs.map((run, i) =>
    s(
      "rect",
      {
        x: (i % perRow) * (size + gap),
        y: Math.floor(i / perRow) * (size + gap),
        width: size,
        height: size,
        rx: 2,
        fill: OUTCOME_COLOURS[run.outcome] || "#9ca3af",
        "data-outcome": run.outcome,
      },
      s("title", null, describe(run)),
    ),
  );
  return s("svg", { class: "strip", width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": "analysis runs by outcome" }, parts);
}
