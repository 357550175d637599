// Two or more jobs side by side: a table of key numbers (best marked) and overlaid curves.

import { apiJson, jobPath } from "./api.js";
import { markNav, withApiKey } from "./auth.js";
import { compareCharts } from "./curves.js";
import { byId, fmt, h, isNum, pct, replace, shortId, show, statusBadge } from "./dom.js";

const MAX_JOBS = 8;

function parseIds(text) {
  return [...new Set(String(text || "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

async function loadRun(id) {
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
    label: `${shortId(job.id)} ${job.method}`,
  };
}

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
  return isNum(value) ? value : null;
}

function formatted(value, kind) {
  if (value instanceof Node) return value;
  if (value === null || value === undefined) return "–";
  if (kind === "pct") return pct(value);
  if (kind === "num") return fmt(value);
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
        { scope: "col", "data-job-id": r.id },
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
        return h(
          "td",
          { class: `${kind && kind !== "int" ? "num" : ""}${isBest ? " best" : ""}`.trim() || null },
          formatted(v, kind),
          isBest ? h("span", { class: "best-mark" }, " ★", h("span", { class: "visually-hidden" }, " best")) : null,
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

async function compare(ids) {
  const message = byId("compare-message");
  const errors = byId("compare-errors");
  replace(errors);
  show(byId("compare-table-card"), false);
  show(byId("compare-curves-card"), false);
  if (ids.length < 2) {
    message.textContent = ids.length
      ? "Add at least one more job id to compare."
      : "Enter two or more job ids, or pick jobs on the Jobs page and press “Compare selected”.";
    return;
  }
  if (ids.length > MAX_JOBS) {
    message.textContent = `Compare at most ${MAX_JOBS} jobs at a time.`;
    return;
  }
  message.textContent = "Loading…";
  const loaded = await Promise.all(ids.map(loadRun));
  const runs = loaded.filter((r) => !r.error);
  const failed = loaded.filter((r) => r.error);
  replace(errors, failed.map((r) => h("p", { class: "notice error", role: "alert" }, r.error)));
  if (!runs.length) {
    message.textContent = "None of these jobs could be loaded.";
    return;
  }
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

function start() {
  const params = new URLSearchParams(window.location.search);
  const ids = parseIds(params.get("ids"));
  const input = byId("compare-ids");
  input.value = ids.join(", ");
  byId("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = parseIds(input.value);
    window.history.replaceState(null, "", `?ids=${encodeURIComponent(chosen.join(","))}`);
    compare(chosen);
  });
  compare(ids);
}

markNav("compare");
withApiKey(start);
