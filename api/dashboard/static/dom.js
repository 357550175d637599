// Small DOM and formatting helpers. Text always goes in as text nodes (model output is
// untrusted), never as HTML.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export function byId(id) {
  return document.getElementById(id);
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function isNum(value) {
  return typeof value === "number" && Number.isFinite(value);
}

// A number with about `digits` significant digits, or an en dash when missing.
export function fmt(value, digits = 3) {
  if (!isNum(value)) return "–";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(2);
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(digits)));
}

export function pct(value, digits = 1) {
  return isNum(value) ? `${(value * 100).toFixed(digits)}%` : "–";
}

export function bytes(n) {
  if (!isNum(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function duration(seconds) {
  if (!isNum(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// "5m ago" inside a <time> element carrying the exact timestamp.
export function ageNode(iso) {
  if (!iso) return "–";
  const then = new Date(iso);
  const seconds = (Date.now() - then.getTime()) / 1000;
  return h("time", { datetime: iso, title: then.toLocaleString() }, `${duration(seconds)} ago`);
}

export function timeNode(iso) {
  if (!iso) return "–";
  const then = new Date(iso);
  return h("time", { datetime: iso }, then.toLocaleString());
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

// "45% · step 90 of 200 · ETA 1m 5s" for a job's progress.
export function progressText(job) {
  const p = job.progress || {};
  const parts = [];
  if (isNum(p.percent)) parts.push(`${p.percent.toFixed(p.percent % 1 ? 1 : 0)}%`);
  if (isNum(p.step) && isNum(p.total_steps)) parts.push(`step ${p.step} of ${p.total_steps}`);
  else if (isNum(p.step)) parts.push(`step ${p.step}`);
  if (isNum(p.eta_seconds) && !TERMINAL.has(job.status)) parts.push(`ETA ${duration(p.eta_seconds)}`);
  if (job.status === "queued" && isNum(job.queue_position)) {
    parts.push(`queue position ${job.queue_position}`);
  }
  return parts.join(" · ") || (job.status === "queued" ? "waiting" : "–");
}

// A <progress> element for a job; indeterminate while running without a known percent.
export function progressValue(job) {
  const p = job.progress || {};
  if (isNum(p.percent)) return Math.max(0, Math.min(100, p.percent));
  if (job.status === "succeeded") return 100;
  if (job.status === "running" || job.status === "cancelling") return null; // indeterminate
  return 0;
}

export function setProgress(node, job) {
  const value = progressValue(job);
  if (value === null) node.removeAttribute("value");
  else node.value = value;
  node.setAttribute("aria-valuetext", progressText(job));
}
