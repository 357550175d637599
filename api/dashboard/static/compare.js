// Two or more jobs side by side: a table of key numbers (best marked) and overlaid curves.
// Opened for a comparison (?comparison=ID, POST /v1/comparisons) the runs are that
// comparison's, named by their labels; opened for job ids (?ids=a,b) a job that belongs to a
// comparison is named by its label there too.

import { apiJson, jobPath } from "./api.js";
import { markNav, withApiKey } from "./auth.js";
import { compareCharts } from "./curves.js";
import { ageNode, byId, fmt, h, isNum, pct, replace, shortId, show, statusBadge } from "./dom.js";
import { deltaText, rateText, shortVerdict } from "./versus.js";

const MAX_JOBS = 8;

function parseIds(text) {
  return [...new Set(String(text || "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

async function loadRun(id, runLabel = null) {
  let job;
  try {
    job = await apiJson(jobPath(id));
  } catch (error) {
    return { id, error: error.status === 404 ? `Job ${id} not found.` : `Job ${id}: ${error.message}` };
  }
  const [metrics, evaluation] = await Promise.all([
    apiJson(jobPath(id, "/metrics")).catch(() => ({ curves: {} })),
    job.evaluation_ready ? apiJson(jobPath(id, "/evaluation")).catch(() => null) : null,
  ]);
  return {
    id,
    job,
    curves: metrics.curves || {},
    report: evaluation ? evaluation.report : null,
    language: job.target_language,
    runLabel,
    label: runLabel || `${shortId(job.id)} ${job.method}`,
  };
}

// The trained side's usable target rate: versus_base when there is one, else the section's own.
function usable(side) {
  const key = side === "en" ? "usable_rate_english" : "usable_rate_target";
  const prompts = side === "en" ? "english_prompts" : "target_prompts";
  return (r) => {
    const c = r.report?.versus_base?.metrics?.[key];
    if (c) return { value: c.trained, interval: c.trained_interval };
    const rate = r.report?.language?.[prompts];
    return rate ? { value: rate.usable_rate, interval: rate.usable_interval } : null;
  };
}

const baseUsable = (r) => {
  const c = r.report?.versus_base?.metrics?.usable_rate_target;
  return c ? { value: c.base, interval: c.base_interval } : null;
};

const versus = (key) => (r) => r.report?.versus_base?.metrics?.[key] ?? null;

const bench = (name, lang) => (r) => {
  const found = (r.report?.benchmarks || []).find(
    (b) => b.benchmark === name && (lang === "en" ? b.language === "en" : b.language !== "en"),
  );
  return found ? found.accuracy : null;
};

const lastOf = (key) => (r) => {
  const points = r.curves[key];
  if (points && points.length) return points[points.length - 1].value;
  const s = r.job.metrics_summary || {};
  return isNum(s[key]) ? s[key] : null;
};

// [label, value(run), format, better: "high" | "low" | null]
const ROWS = [
  ["Status", (r) => statusBadge(r.job.status), null, null],
  ["Base model", (r) => r.job.base_model, null, null],
  ["Language", (r) => r.job.target_language, null, null],
  ["Method", (r) => r.job.method, null, null],
  ["Trainable", (r) => r.job.spec?.trainable ?? "–", null, null],
  ["Data size", (r) => r.job.data_size, "int", null],
  ["λ (NLL weight)", (r) => r.job.spec?.hyperparameters?.lambda_nll ?? null, "num", null],
  ["β", (r) => r.job.spec?.hyperparameters?.beta ?? null, "num", null],
  ["Learning rate", (r) => r.job.spec?.hyperparameters?.learning_rate ?? null, "num", null],
  ["Final loss", lastOf("loss"), "num", "low"],
  ["Final NLL", lastOf("nll"), "num", "low"],
  ["Final reward accuracy (target)", lastOf("accuracy_tgt"), "num", "high"],
  ["Final reward accuracy (English)", lastOf("accuracy_en"), "num", "high"],
  ["Usable answers, target prompts", usable("tgt"), "rateci", "high"],
  ["Usable answers of the base model, target prompts", baseUsable, "rateci", null],
  ["Δ vs base, usable answers (target)", versus("usable_rate_target"), "delta", "high"],
  ["Usable answers, English prompts", usable("en"), "rateci", "high"],
  ["Δ vs base, usable answers (English)", versus("usable_rate_english"), "delta", "high"],
  ["Right-language rate, target prompts", (r) => r.report?.language?.target_prompts?.pass_rate, "pct", "high"],
  ["Right-language rate, English prompts", (r) => r.report?.language?.english_prompts?.pass_rate, "pct", "high"],
  ["English bias", (r) => r.report?.language?.english_bias, "pct", "low"],
  ["Preference accuracy, target", (r) => r.report?.preference?.directions?.tgt?.accuracy, "pct", "high"],
  ["Preference accuracy, English", (r) => r.report?.preference?.directions?.en?.accuracy, "pct", "high"],
  ["Held-out NLL, target answers", (r) => r.report?.preference?.nll?.target?.nll, "num", "low"],
  ["Belebele, target", bench("belebele", "tgt"), "pct", "high"],
  ["Belebele, English", bench("belebele", "en"), "pct", "high"],
  ["MMMLU, target", bench("mmmlu", "tgt"), "pct", "high"],
  ["MMMLU, English", bench("mmmlu", "en"), "pct", "high"],
  ["Win rate, target prompts", (r) => r.report?.judge?.results?.tgt, "win", "high"],
  ["Win rate, English prompts", (r) => r.report?.judge?.results?.en, "win", "high"],
];

function numeric(value, kind) {
  if (kind === "win") return value && isNum(value.win_rate) ? value.win_rate : null;
  if (kind === "rateci") return value && isNum(value.value) ? value.value : null;
  if (kind === "delta") return value && isNum(value.delta) ? value.delta : null;
  return isNum(value) ? value : null;
}

function formatted(value, kind) {
  if (value instanceof Node) return value;
  if (value === null || value === undefined) return "–";
  if (kind === "pct") return pct(value);
  if (kind === "num") return fmt(value);
  if (kind === "rateci") return rateText(value.value, value.interval);
  if (kind === "delta") {
    const note = shortVerdict(value);
    return [deltaText(value), note ? h("span", { class: "verdict-note" }, note) : null];
  }
  if (kind === "win") {
    if (!isNum(value.win_rate)) return "–";
    const ci = isNum(value.stderr) ? ` ± ${fmt(1.96 * value.stderr, 2)}` : "";
    return `${fmt(value.win_rate, 3)}${ci} (n=${value.n})`;
  }
  return String(value);
}

function compareTable(runs) {
  const head = h(
    "tr",
    {},
    h("th", { scope: "col" }, "Metric"),
    runs.map((r) =>
      h(
        "th",
        { scope: "col", "data-job-id": r.id, "data-label": r.runLabel },
        r.runLabel ? [h("strong", { class: "run-label" }, r.runLabel), h("br")] : null,
        h("a", { href: `/dashboard/jobs/${encodeURIComponent(r.id)}`, title: r.id }, h("code", {}, shortId(r.id))),
        h("br"),
        `${r.job.method} · ${r.job.target_language} · N=${r.job.data_size}`,
      ),
    ),
  );
  const body = ROWS.map(([label, get, kind, better]) => {
    const values = runs.map((r) => {
      try {
        return get(r);
      } catch {
        return null;
      }
    });
    const nums = values.map((v) => numeric(v, kind));
    const present = nums.filter((v) => v !== null);
    let best = null;
    if (better && present.length >= 2 && new Set(present).size > 1) {
      best = better === "high" ? Math.max(...present) : Math.min(...present);
    }
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      values.map((v, i) => {
        const isBest = best !== null && nums[i] === best;
        // the mark goes right after the figure, before any note under it
        const [figure, ...notes] = [formatted(v, kind)].flat();
        return h(
          "td",
          { class: `${kind && kind !== "int" ? "num" : ""}${isBest ? " best" : ""}`.trim() || null },
          figure,
          isBest ? h("span", { class: "best-mark" }, " ★", h("span", { class: "visually-hidden" }, " best")) : null,
          notes,
        );
      }),
    );
  });
  return h(
    "table",
    { class: "data-table compare", id: "compare-table-el" },
    h("caption", { class: "visually-hidden" }, "Key numbers of the compared jobs"),
    h("thead", {}, head),
    h("tbody", {}, body),
  );
}

// Jobs created by POST /v1/comparisons name it in their metadata; its runs carry the labels.
async function comparisonLabels(runs) {
  const ids = [...new Set(runs.map((r) => r.job.spec?.metadata?.comparison_id).filter(Boolean))];
  const found = await Promise.all(
    ids.map((id) => apiJson(`/v1/comparisons/${encodeURIComponent(id)}`).catch(() => null)),
  );
  const labels = new Map();
  for (const comparison of found) {
    for (const run of comparison?.runs || []) labels.set(run.job_id, run.label);
  }
  return labels;
}

function nameRuns(runs, labels) {
  for (const r of runs) {
    const label = labels.get(r.id);
    if (!r.runLabel && label) Object.assign(r, { runLabel: label, label });
  }
}

async function compare(ids, labels = new Map(), minimum = 2) {
  const message = byId("compare-message");
  const errors = byId("compare-errors");
  replace(errors);
  show(byId("compare-table-card"), false);
  show(byId("compare-curves-card"), false);
  if (ids.length < minimum) {
    message.textContent = ids.length
      ? "Add at least one more job id to compare."
      : "Enter two or more job ids, pick jobs on the Jobs page and press “Compare selected”, " +
        "or open one of your comparisons below.";
    return;
  }
  if (ids.length > MAX_JOBS) {
    message.textContent = `Compare at most ${MAX_JOBS} jobs at a time.`;
    return;
  }
  message.textContent = "Loading…";
  const loaded = await Promise.all(ids.map((id) => loadRun(id, labels.get(id) || null)));
  const runs = loaded.filter((r) => !r.error);
  const failed = loaded.filter((r) => r.error);
  replace(errors, failed.map((r) => h("p", { class: "notice error", role: "alert" }, r.error)));
  if (!runs.length) {
    message.textContent = "None of these jobs could be loaded.";
    return;
  }
  if (runs.some((r) => !r.runLabel)) nameRuns(runs, await comparisonLabels(runs));
  message.textContent = `Comparing ${runs.length} job${runs.length === 1 ? "" : "s"}.`;
  replace(byId("compare-table"), compareTable(runs));
  show(byId("compare-table-card"));
  const charts = compareCharts(runs);
  replace(
    byId("compare-curves"),
    charts.length ? charts : h("p", { class: "empty" }, "None of these jobs has training metrics yet."),
  );
  show(byId("compare-curves-card"));
}

// ---- comparisons (POST /v1/comparisons) --------------------------------------------------

function comparisonTitle(c) {
  return c.name ? `“${c.name}”` : shortId(c.id);
}

function showComparisonInfo(c) {
  const box = byId("comparison-info");
  replace(
    box,
    h("h2", { id: "comparison-title" }, "Comparison ", comparisonTitle(c), " ", statusBadge(c.status)),
    h(
      "p",
      { class: "hint" },
      `${c.base_model} → ${c.target_language} · runs ${c.runs.map((r) => r.label).join(", ")} · created `,
      ageNode(c.created_at),
    ),
    c.report_note ? h("p", { class: "hint", id: "comparison-note" }, `No side-by-side report yet: ${c.report_note}.`) : null,
  );
  show(box);
}

async function openComparison(id) {
  const message = byId("compare-message");
  message.textContent = "Loading the comparison…";
  let comparison;
  try {
    comparison = await apiJson(`/v1/comparisons/${encodeURIComponent(id)}`);
  } catch (error) {
    message.textContent = error.status === 404 ? `Comparison ${id} not found.` : `Comparison ${id}: ${error.message}`;
    return;
  }
  showComparisonInfo(comparison);
  const ids = comparison.runs.map((r) => r.job_id);
  byId("compare-ids").value = ids.join(", ");
  await compare(ids, new Map(comparison.runs.map((r) => [r.job_id, r.label])), 1);
}

async function listComparisons() {
  const box = byId("comparisons-list");
  let page;
  try {
    page = await apiJson("/v1/comparisons?limit=20");
  } catch (error) {
    replace(box, h("p", { class: "error" }, `Could not load comparisons: ${error.message}`));
    show(byId("comparisons-card"));
    return;
  }
  if (!page.data.length) {
    replace(box, h("p", { class: "empty" }, "No comparisons yet: POST /v1/comparisons trains several methods on the same data."));
  } else {
    replace(box, comparisonsTable(page.data));
  }
  show(byId("comparisons-card"));
}

function comparisonsTable(comparisons) {
  const rows = comparisons.map((c) =>
    h(
      "tr",
      { "data-comparison-id": c.id },
      h("th", { scope: "row" }, h("a", { href: `/dashboard/compare?comparison=${encodeURIComponent(c.id)}` }, comparisonTitle(c))),
      h("td", {}, statusBadge(c.status)),
      h("td", {}, c.runs.map((r, i) => [i ? ", " : "", `${r.label} (${r.status})`])),
      h("td", {}, `${c.base_model} → ${c.target_language}`),
      h("td", {}, ageNode(c.created_at)),
    ),
  );
  return h(
    "table",
    { class: "data-table compact", id: "comparisons-table" },
    h("caption", { class: "visually-hidden" }, "Your comparisons, newest first"),
    h("thead", {}, h("tr", {}, ["Comparison", "Status", "Runs", "Model", "Created"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows),
  );
}

function start() {
  const params = new URLSearchParams(window.location.search);
  const ids = parseIds(params.get("ids"));
  const comparisonId = params.get("comparison");
  const input = byId("compare-ids");
  input.value = ids.join(", ");
  byId("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = parseIds(input.value);
    window.history.replaceState(null, "", `?ids=${encodeURIComponent(chosen.join(","))}`);
    show(byId("comparison-info"), false);
    compare(chosen);
  });
  listComparisons();
  if (comparisonId) openComparison(comparisonId);
  else compare(ids);
}

markNav("compare");
withApiKey(start);
