// Jobs table: filters, cursor paging, live refresh while jobs are active, pick jobs to compare.

import { apiJson } from "./api.js";
import { markNav, withApiKey } from "./auth.js";
import {
  TERMINAL,
  ageNode,
  byId,
  fmt,
  h,
  isNum,
  pct,
  progressText,
  replace,
  setProgress,
  shortId,
  statusBadge,
} from "./dom.js";

const FILTERS = ["status", "target_language", "base_model"];
const REFRESH_MS = 2000;

const state = {
  filters: {},
  limit: 20,
  cursors: [null], // cursor of each page visited; the last one is the page shown
  selected: new Set(),
  timer: null,
  loading: false,
};

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  for (const name of FILTERS) {
    const value = (params.get(name) || "").trim();
    if (value) state.filters[name] = value;
  }
  const limit = Number(params.get("limit"));
  if (Number.isInteger(limit) && limit >= 1 && limit <= 100) state.limit = limit;
  const cursor = params.get("cursor");
  if (cursor) state.cursors = [null, cursor];
}

function writeUrl() {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (state.filters[name]) params.set(name, state.filters[name]);
  if (state.limit !== 20) params.set("limit", String(state.limit));
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  const query = params.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}

function listPath() {
  const params = new URLSearchParams({ limit: String(state.limit) });
  for (const name of FILTERS) if (state.filters[name]) params.set(name, state.filters[name]);
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  return `/v1/jobs?${params}`;
}

// An evaluated job shows its held-out figures, which compare across methods (an SFT run
// logs no preference terms while it trains); a job still training shows its live ones.
function keyMetrics(job) {
  const s = job.metrics_summary || {};
  const parts = [];
  if (isNum(s.loss)) parts.push(`loss ${fmt(s.loss)}`);
  const evaluated = isNum(s.eval_target_pass_rate) || isNum(s.eval_pref_acc_tgt);
  if (evaluated) {
    if (isNum(s.eval_target_pass_rate)) parts.push(`right language ${pct(s.eval_target_pass_rate, 0)}`);
    if (isNum(s.eval_pref_acc_tgt)) parts.push(`pref tgt ${fmt(s.eval_pref_acc_tgt, 2)}`);
    if (isNum(s.eval_win_rate)) parts.push(`win ${pct(s.eval_win_rate, 0)}`);
  } else {
    if (isNum(s.accuracy_tgt)) parts.push(`acc tgt ${fmt(s.accuracy_tgt, 2)}`);
    if (isNum(s.margin_tgt)) parts.push(`margin tgt ${fmt(s.margin_tgt, 2)}`);
  }
  if (job.evaluation_ready) parts.push("evaluated");
  return parts.join(" · ") || "–";
}

function jobRow(job) {
  const link = `/dashboard/jobs/${encodeURIComponent(job.id)}`;
  const checkbox = h("input", {
    type: "checkbox",
    class: "select-job",
    value: job.id,
    "aria-label": `Select job ${shortId(job.id)} for comparison`,
    checked: state.selected.has(job.id),
  });
  checkbox.addEventListener("change", () => {
    if (checkbox.checked) state.selected.add(job.id);
    else state.selected.delete(job.id);
    updateCompareButton();
  });
  const bar = h("progress", { max: "100", "aria-label": `Progress of job ${shortId(job.id)}` });
  setProgress(bar, job);
  // A finished job's last stage says little; a failed or cancelled one's says where it stopped.
  let stage = job.stage || "–";
  if (job.status === "succeeded") stage = "done";
  else if (job.stage && TERMINAL.has(job.status)) stage = `stopped in ${job.stage}`;
  return h(
    "tr",
    { "data-job-id": job.id, "data-status": job.status },
    h("td", {}, checkbox),
    h("td", {}, h("a", { href: link, title: job.id }, h("code", {}, shortId(job.id)))),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "stage" }, stage),
    h("td", { class: "progress-cell" }, bar, h("span", { class: "progress-text" }, progressText(job))),
    h("td", {}, job.base_model),
    h("td", {}, job.target_language),
    h("td", {}, job.method),
    h("td", { class: "num" }, String(job.data_size)),
    h("td", {}, ageNode(job.created_at)),
    h("td", { class: "metrics" }, keyMetrics(job)),
  );
}

// Rows are rebuilt on every refresh; keep keyboard focus on the same control of the same job.
function focusedControl(body) {
  const active = document.activeElement;
  if (!active || !body.contains(active)) return null;
  const row = active.closest("tr[data-job-id]");
  return row ? { jobId: row.dataset.jobId, tag: active.tagName } : null;
}

function restoreFocus(body, focus) {
  if (!focus) return;
  const row = [...body.querySelectorAll("tr[data-job-id]")].find((r) => r.dataset.jobId === focus.jobId);
  const target = row && (focus.tag === "A" ? row.querySelector("a") : row.querySelector("input"));
  if (target) target.focus();
}

function updateCompareButton() {
  const button = byId("compare-selected");
  const n = state.selected.size;
  button.disabled = n < 2;
  button.textContent = n ? `Compare selected (${n})` : "Compare selected";
}

function filtersActive() {
  return FILTERS.some((name) => state.filters[name]);
}

async function load({ quiet = false } = {}) {
  if (state.loading) return;
  state.loading = true;
  const message = byId("jobs-message");
  const body = byId("jobs-body");
  if (!quiet) message.textContent = "Loading jobs…";
  try {
    const page = await apiJson(listPath());
    const focus = focusedControl(body);
    replace(body, page.data.map(jobRow));
    restoreFocus(body, focus);
    if (!page.data.length) {
      body.append(
        h(
          "tr",
          { class: "empty-row" },
          h(
            "td",
            { colspan: "11" },
            filtersActive()
              ? "No jobs match these filters."
              : "No jobs yet. Submit one with POST /v1/jobs or `clo jobs submit`.",
          ),
        ),
      );
    }
    state.nextCursor = page.has_more ? page.next_cursor : null;
    byId("next-page").disabled = !state.nextCursor;
    byId("prev-page").disabled = state.cursors.length <= 1;
    byId("page-label").textContent = `Page ${state.cursors.length}`;
    message.textContent = page.data.length
      ? `${page.data.length} job${page.data.length === 1 ? "" : "s"} shown${page.has_more ? ", more on older pages" : ""}.`
      : "";
    writeUrl();
    scheduleRefresh(page.data.some((job) => !TERMINAL.has(job.status)));
  } catch (error) {
    if (error.status === 401) return; // the key panel shows what to do
    replace(body);
    message.textContent = `Could not load jobs: ${error.message}`;
    message.classList.add("error");
    scheduleRefresh(true);
    return;
  } finally {
    state.loading = false;
  }
  message.classList.remove("error");
}

// While anything on the page is still moving, refresh it (same page, same filters).
function scheduleRefresh(active) {
  clearTimeout(state.timer);
  if (active) state.timer = setTimeout(() => load({ quiet: true }), REFRESH_MS);
}

function applyFiltersFromForm(form) {
  const data = new FormData(form);
  state.filters = {};
  for (const name of FILTERS) {
    const value = String(data.get(name) || "").trim();
    if (value) state.filters[name] = value;
  }
  state.cursors = [null];
}

function fillForm(form) {
  for (const name of FILTERS) form.elements[name].value = state.filters[name] || "";
}

async function fillOptions() {
  // Suggestions only: a failure here leaves plain text inputs.
  try {
    const [languages, models] = await Promise.all([apiJson("/v1/languages"), apiJson("/v1/models")]);
    replace(
      byId("language-options"),
      languages.map((l) => h("option", { value: l.code }, `${l.name}`)),
    );
    replace(
      byId("model-options"),
      models.data.filter((m) => m.kind === "causal_lm").map((m) => h("option", { value: m.name })),
    );
  } catch {
    // ignore
  }
}

function start() {
  readUrl();
  const form = byId("filters");
  fillForm(form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFiltersFromForm(form);
    load();
  });
  byId("clear-filters").addEventListener("click", () => {
    state.filters = {};
    state.cursors = [null];
    fillForm(form);
    load();
  });
  byId("next-page").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    load();
  });
  byId("prev-page").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    load();
  });
  byId("compare-selected").addEventListener("click", () => {
    const ids = [...state.selected].join(",");
    window.location.href = `/dashboard/compare?ids=${encodeURIComponent(ids)}`;
  });
  updateCompareButton();
  fillOptions();
  load();
}

markNav("jobs");
withApiKey(start);
