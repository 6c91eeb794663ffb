// Two small SVG drawings, each with a text alternative: the stacked bar chart of usage over time, and the
// 24-hour strip of an offer's price windows. Geometry uses floats; every number printed comes from the API
// (amounts as its decimal strings, or nano sums formatted with BigInt).

import { h, s } from "./dom.js";
import { bucketLabel, nanoToCny, sumNano } from "./format.js";

const CHART_W = 720;
const CHART_H = 260;
const PAD = { left: 8, right: 8, top: 22, bottom: 34 };
const SERIES_MAX = 8; // colours in console.css; further groups share the last colour class (named in the legend)
const DAY_MINUTES = 1440;

/** The rows of a usage summary grouped as buckets (ascending) × groups (by first appearance). */
export function pivot(summary) {
  const buckets = [];
  const byStart = new Map();
  const groups = [];
  for (const row of summary.data) {
    const group = row.group === null ? "" : row.group;
    if (!groups.includes(group)) groups.push(group);
    let bucket = byStart.get(row.start_ms);
    if (!bucket) {
      bucket = { start: row.start, start_ms: row.start_ms, rows: new Map() };
      byStart.set(row.start_ms, bucket);
      buckets.push(bucket);
    }
    bucket.rows.set(group, row);
  }
  buckets.sort((a, b) => a.start_ms - b.start_ms);
  return { buckets, groups };
}

function metricOf(row, metric) {
  return metric === "cost" ? Number(row.cost_nano) : Number(row.tokens);
}

function metricText(rows, metric) {
  if (metric === "cost") return `¥${nanoToCny(sumNano(rows.map((r) => r.cost_nano)))}`;
  return String(rows.reduce((n, r) => n + BigInt(r.tokens), 0n));
}

const PERIOD_MS = { hour: 3600000, day: 86400000 };
const SLOTS_MAX = 800; // a summary spans at most this many periods on the chart's axis

/** Every period of the summary's range as a slot (empty ones too), each with the API's bucket where it has one. */
function slots(summary, buckets) {
  const step = PERIOD_MS[summary.period] || PERIOD_MS.day;
  const count = Math.min(SLOTS_MAX, Math.max(1, Math.ceil((summary.to_ms - summary.from_ms) / step)));
  const result = Array.from({ length: count }, (_, i) => ({ start_ms: summary.from_ms + i * step, bucket: null }));
  for (const bucket of buckets) {
    const i = Math.floor((bucket.start_ms - summary.from_ms) / step);
    if (i >= 0 && i < count) result[i] = { start_ms: bucket.start_ms, bucket };
  }
  return result;
}

function slotLabel(slot, summary) {
  if (slot.bucket) return bucketLabel(slot.bucket.start, summary.period);
  const options = summary.period === "hour"
    ? { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
    : { month: "2-digit", day: "2-digit" };
  const parts = new Intl.DateTimeFormat("en-GB", { timeZone: summary.timezone, ...options }).formatToParts(new Date(slot.start_ms));
  const part = (type) => (parts.find((p) => p.type === type) || {}).value || "";
  return summary.period === "hour" ? `${part("month")}-${part("day")} ${part("hour")}:${part("minute")}` : `${part("month")}-${part("day")}`;
}

/** The stacked bar chart, role=img, its aria-label the summary the caller writes. */
export function stackedBars(summary, metric, label, groupName) {
  const { buckets, groups } = pivot(summary);
  const axis = slots(summary, buckets);
  const totals = buckets.map((b) => [...b.rows.values()].reduce((n, r) => n + metricOf(r, metric), 0));
  const max = Math.max(1, ...totals);
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const slot = plotW / axis.length;
  const barW = Math.max(1, Math.min(48, slot * 0.75));
  const svg = s("svg", {
    viewBox: `0 0 ${CHART_W} ${CHART_H}`,
    class: "chart",
    role: "img",
    "aria-label": label,
    "data-testid": "usage-chart",
  });
  svg.append(s("line", { x1: PAD.left, x2: CHART_W - PAD.right, y1: PAD.top + plotH, y2: PAD.top + plotH, class: "axis" }));
  const maxRows = buckets.length ? [...buckets[totals.indexOf(Math.max(...totals))].rows.values()] : [];
  svg.append(s("text", { x: PAD.left, y: 14, class: "axis-label" }, maxRows.length ? metricText(maxRows, metric) : ""));
  const labelEvery = Math.max(1, Math.ceil(axis.length / 8));
  axis.forEach((entry, i) => {
    const x = PAD.left + slot * i + (slot - barW) / 2;
    if (i % labelEvery === 0) {
      svg.append(s("line", { x1: (x + barW / 2).toFixed(2), x2: (x + barW / 2).toFixed(2), y1: PAD.top + plotH, y2: PAD.top + plotH + 4, class: "axis" }));
      svg.append(s("text", { x: (x + barW / 2).toFixed(2), y: CHART_H - 12, class: "axis-label", "text-anchor": "middle" },
        slotLabel(entry, summary)));
    }
    if (!entry.bucket) return;
    let y = PAD.top + plotH;
    groups.forEach((group, g) => {
      const row = entry.bucket.rows.get(group);
      if (!row) return;
      const height = (metricOf(row, metric) / max) * plotH;
      y -= height;
      const rect = s("rect", {
        x: x.toFixed(2), y: y.toFixed(2), width: barW.toFixed(2), height: Math.max(0, height).toFixed(2),
        class: `bar series-${Math.min(g, SERIES_MAX - 1)}`,
      });
      rect.append(s("title", {}, `${slotLabel(entry, summary)} · ${groupName(group)} · ${metricText([row], metric)}`));
      svg.append(rect);
    });
  });
  return svg;
}

export function legend(groups, groupName) {
  return h("ul", { class: "legend" }, groups.map((group, g) =>
    h("li", {}, h("span", { class: `swatch series-${Math.min(g, SERIES_MAX - 1)}`, "aria-hidden": "true" }), groupName(group))));
}

function minutes(hhmm) {
  const [hh, mm] = hhmm.split(":").map(Number);
  return hh * 60 + mm;
}

/** A day's segments [{from, to, name, percent}] covering 00:00-24:00 for one day type. */
export function daySegments(rules, dayType) {
  const windows = (rules.windows || [])
    .filter((w) => w.days.includes(dayType))
    .map((w) => ({ from: minutes(w.from), to: minutes(w.to), name: w.name, percent: w.percent }))
    .sort((a, b) => a.from - b.from);
  const segments = [];
  let at = 0;
  for (const w of windows) {
    if (w.from > at) segments.push({ from: at, to: w.from, name: rules.default_window_name, percent: 100 });
    segments.push(w);
    at = Math.max(at, w.to);
  }
  if (at < DAY_MINUTES) segments.push({ from: at, to: DAY_MINUTES, name: rules.default_window_name, percent: 100 });
  return segments;
}

function clock(minute) {
  return `${String(Math.floor(minute / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;
}

export function segmentText(segment) {
  return `${clock(segment.from)}–${clock(segment.to)} ${segment.name} ${segment.percent}%`;
}

function bandClass(percent) {
  if (percent < 100) return "band band-low";
  if (percent > 100) return "band band-high";
  return "band band-std";
}

/** The 24-hour strip of one day type, role=img, with its segments as its label. */
export function priceStrip(segments, label) {
  const width = 480;
  const svg = s("svg", { viewBox: `0 0 ${width} 40`, class: "strip", role: "img", "aria-label": label });
  for (const seg of segments) {
    const x = (seg.from / DAY_MINUTES) * width;
    const w = ((seg.to - seg.from) / DAY_MINUTES) * width;
    const rect = s("rect", { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 24, class: bandClass(seg.percent) });
    rect.append(s("title", {}, segmentText(seg)));
    svg.append(rect);
    if (w > 34) svg.append(s("text", { x: (x + w / 2).toFixed(2), y: 16, class: "band-label", "text-anchor": "middle" }, `${seg.percent}%`));
  }
  for (const hour of [0, 6, 12, 18, 24]) {
    const x = Math.min(width - 1, Math.max(1, (hour / 24) * width));
    const anchor = hour === 0 ? "start" : hour === 24 ? "end" : "middle";
    svg.append(s("text", { x, y: 37, class: "axis-label", "text-anchor": anchor }, `${String(hour).padStart(2, "0")}:00`));
  }
  return svg;
}
