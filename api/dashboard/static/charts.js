// Inline SVG charts drawn by hand: line charts of training curves and win-rate bars with
// error bars. Colours and dash patterns come from CSS classes (s0..s7), so every series
// stays distinguishable without colour too.

import { fmt, h, isNum } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const SERIES_CLASSES = 8;
let chartCounter = 0;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function seriesClass(index) {
  return `s${index % SERIES_CLASSES}`;
}

// Round tick spacing (1, 2 or 5 times a power of ten) giving about `count` ticks.
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  const nice = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
  return nice * power;
}

function ticks(min, max, count) {
  const step = niceStep(max - min, count);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function domain(values, padFraction) {
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    return [min - pad, max + pad];
  }
  const pad = (max - min) * padFraction;
  min -= pad;
  max += pad;
  return [min, max];
}

function describeSeries(series) {
  return series
    .filter((s) => s.points.length)
    .map((s) => {
      const first = s.points[0];
      const last = s.points[s.points.length - 1];
      const values = s.points.map((p) => p.value);
      return (
        `${s.label}: ${s.points.length} points, ${fmt(first.value)} at step ${first.step} ` +
        `to ${fmt(last.value)} at step ${last.step} (min ${fmt(Math.min(...values))}, ` +
        `max ${fmt(Math.max(...values))})`
      );
    })
    .join("; ");
}

// A line chart: one path per series over the training step. Returns a <figure>.
export function lineChart({ title, series, metric = "", width = 380, height = 210 }) {
  const id = `chart-${(chartCounter += 1)}`;
  const drawn = series.filter((s) => s.points.some((p) => isNum(p.value)));
  const figure = h("figure", { class: "chart", "data-metric": metric || title });
  figure.append(h("figcaption", { id: `${id}-title` }, title));
  if (!drawn.length) {
    figure.append(h("p", { class: "empty" }, "No values."));
    return figure;
  }
  const margin = { left: 56, right: 14, top: 10, bottom: 34 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const points = drawn.flatMap((s) => s.points.filter((p) => isNum(p.value)));
  const [x0, x1] = (() => {
    const steps = points.map((p) => p.step);
    const lo = Math.min(...steps);
    const hi = Math.max(...steps);
    return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
  })();
  const [y0, y1] = domain(points.map((p) => p.value), 0.06);
  const x = (step) => margin.left + ((step - x0) / (x1 - x0)) * plotW;
  const y = (value) => margin.top + (1 - (value - y0) / (y1 - y0)) * plotH;

  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart-svg",
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    preserveAspectRatio: "xMidYMid meet",
  });
  root.append(svg("desc", { id: `${id}-desc` }, describeSeries(drawn)));
  const grid = svg("g", { class: "grid" });
  for (const v of ticks(y0, y1, 4)) {
    grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    grid.append(
      svg("text", { x: margin.left - 6, y: y(v), class: "tick y", "dominant-baseline": "middle" }, fmt(v)),
    );
  }
  const xTicks = ticks(x0, x1, 5).filter((v) => Number.isInteger(v) || x1 - x0 < 5);
  for (const v of xTicks) {
    grid.append(
      svg("text", { x: x(v), y: height - margin.bottom + 16, class: "tick x" }, fmt(v)),
    );
  }
  grid.append(
    svg("text", { x: margin.left + plotW / 2, y: height - 3, class: "axis-label" }, "step"),
  );
  root.append(grid);
  root.append(
    svg("line", {
      class: "axis",
      x1: margin.left,
      x2: width - margin.right,
      y1: margin.top + plotH,
      y2: margin.top + plotH,
    }),
  );
  root.append(svg("line", { class: "axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }));

  drawn.forEach((s, index) => {
    const cls = s.cls || seriesClass(index);
    const valid = s.points.filter((p) => isNum(p.value));
    const d = valid
      .map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`)
      .join(" ");
    const path = svg("path", {
      d,
      class: `line ${cls} ${s.dash || ""}`.trim(),
      "data-series": s.label,
      "data-points": valid.length,
    });
    path.append(svg("title", {}, s.label));
    root.append(path);
    if (valid.length === 1) {
      root.append(svg("circle", { cx: x(valid[0].step), cy: y(valid[0].value), r: 3, class: `dot ${cls}` }));
    }
  });
  figure.append(root);
  figure.append(legend(drawn));
  return figure;
}

function legend(series) {
  const list = h("ul", { class: "legend" });
  series.forEach((s, index) => {
    const cls = s.cls || seriesClass(index);
    const valid = s.points.filter((p) => isNum(p.value));
    const last = valid[valid.length - 1];
    list.append(
      h(
        "li",
        {},
        h("span", { class: `swatch ${cls} ${s.dash || ""}`.trim(), "aria-hidden": "true" }),
        h("span", { class: "legend-label" }, s.label),
        last ? h("span", { class: "legend-value" }, ` ${fmt(last.value)} @ ${last.step}`) : null,
      ),
    );
  });
  return list;
}

// Horizontal bars for win rates with 95% error bars (±1.96 standard errors); 0.5 = parity.
export function winRateChart(rows, { width = 420 } = {}) {
  const id = `chart-${(chartCounter += 1)}`;
  const rowH = 34;
  const margin = { left: 150, right: 20, top: 8, bottom: 26 };
  const plotW = width - margin.left - margin.right;
  const height = margin.top + margin.bottom + rowH * rows.length;
  const x = (v) => margin.left + Math.max(0, Math.min(1, v)) * plotW;
  const desc = rows
    .map((r) => `${r.label}: ${isNum(r.rate) ? fmt(r.rate) : "no value"}` +
      (isNum(r.stderr) ? ` ± ${fmt(1.96 * r.stderr)} (95%)` : "") + `, n=${r.n}`)
    .join("; ");
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart-svg winrate",
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
  });
  root.append(svg("title", { id: `${id}-title` }, "Win rate against the baseline"));
  root.append(svg("desc", { id: `${id}-desc` }, desc));
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { class: v === 0.5 ? "parity" : "gridline", x1: x(v), x2: x(v), y1: margin.top, y2: height - margin.bottom }));
    root.append(svg("text", { class: "tick x", x: x(v), y: height - 8 }, fmt(v)));
  }
  rows.forEach((r, i) => {
    const top = margin.top + i * rowH;
    const mid = top + rowH / 2;
    root.append(svg("text", { class: "tick y", x: margin.left - 8, y: mid, "dominant-baseline": "middle" }, r.label));
    if (!isNum(r.rate)) return;
    root.append(svg("rect", { class: `bar ${seriesClass(i)}`, x: x(0), y: top + 7, width: x(r.rate) - x(0), height: rowH - 14 }));
    if (isNum(r.stderr)) {
      const lo = x(r.rate - 1.96 * r.stderr);
      const hi = x(r.rate + 1.96 * r.stderr);
      root.append(svg("line", { class: "errorbar", x1: lo, x2: hi, y1: mid, y2: mid }));
      root.append(svg("line", { class: "errorbar", x1: lo, x2: lo, y1: mid - 6, y2: mid + 6 }));
      root.append(svg("line", { class: "errorbar", x1: hi, x2: hi, y1: mid - 6, y2: mid + 6 }));
    }
  });
  return root;
}
