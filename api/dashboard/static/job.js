// One job: live status and progress (event stream + a 1 s poll of the job), training curves,
// translation counts, the evaluation report, artifact downloads and cancel.

import { ApiError, apiJson, apiRequest, jobPath } from "./api.js";
import { markNav, withApiKey } from "./auth.js";
import { jobCharts } from "./curves.js";
import {
  TERMINAL,
  byId,
  bytes,
  fmt,
  h,
  progressText,
  replace,
  setProgress,
  show,
  statusBadge,
  timeNode,
} from "./dom.js";
import { renderEvaluation, renderTranslation } from "./evaluation.js";
import { followEvents } from "./sse.js";

const POLL_MS = 1000;
const METRICS_MS = 3000;
const MAX_EVENTS_SHOWN = 300;
// Up to this size a download is fetched, hashed and checked in the browser; larger files
// (merged models) go through a signed link so the browser streams them to disk.
const STREAM_ABOVE = 64 * 1024 * 1024;

const jobId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop() || "");

const state = {
  job: null,
  metricsSignature: "",
  metricsLoadedAt: 0,
  evaluationShown: false,
  translation: null,
  seenEvents: new Set(),
  pollTimer: null,
  stream: new AbortController(),
};

function fail(message) {
  const box = byId("job-error");
  box.textContent = message;
  show(box);
  show(byId("page-content"), false);
  clearTimeout(state.pollTimer);
  state.stream.abort();
}

function fact(term, value) {
  if (value === null || value === undefined || value === "") return null;
  return h("div", { class: "fact" }, h("dt", {}, term), h("dd", {}, value));
}

function renderFacts(job) {
  const spec = job.spec || {};
  const hp = spec.hyperparameters || {};
  const metadata = Object.entries(spec.metadata || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  replace(
    byId("job-facts"),
    fact("Stage", job.status === "succeeded" ? `done (last: ${job.stage || "–"})` : job.stage || "–"),
    fact("Base model", job.base_model),
    fact("Language", job.target_language),
    fact("Method", spec.method === "sft" && spec.sft_variant ? `sft (${spec.sft_variant})` : job.method),
    fact("Trainable", spec.trainable),
    fact("Data size", String(job.data_size)),
    fact("Seed data", spec.seed_data ? spec.seed_data.source : null),
    fact("λ (NLL weight)", hp.lambda_nll !== undefined ? fmt(hp.lambda_nll) : null),
    fact("β", hp.beta !== undefined ? fmt(hp.beta) : null),
    fact("Learning rate", hp.learning_rate !== undefined ? fmt(hp.learning_rate) : null),
    fact("Epochs", hp.epochs !== undefined ? fmt(hp.epochs) : null),
    fact("Batch size", hp.batch_size !== undefined ? String(hp.batch_size) : null),
    fact("Attempt", `${job.attempt} of ${job.max_attempts}`),
    fact("Queue position", job.queue_position ? String(job.queue_position) : null),
    fact("Created", timeNode(job.created_at)),
    fact("Started", job.started_at ? timeNode(job.started_at) : null),
    fact("Finished", job.finished_at ? timeNode(job.finished_at) : null),
    fact("Cancel requested", job.cancel_requested_at ? timeNode(job.cancel_requested_at) : null),
    fact("Metadata", metadata),
  );
}

function renderJob(job) {
  state.job = job;
  document.title = `Job ${job.id.slice(0, 8)} (${job.status}) · CLO dashboard`;
  byId("job-id").textContent = job.id;
  replace(byId("job-status"), statusBadge(job.status));
  const bar = byId("job-progress");
  setProgress(bar, job);
  byId("progress-label").textContent = job.stage && !TERMINAL.has(job.status)
    ? `Progress (${job.stage})`
    : "Progress";
  byId("progress-text").textContent = progressText(job);
  const failure = byId("job-failure");
  if (job.error) {
    const e = job.error;
    failure.textContent = `${e.type} ${e.code}: ${e.message}${e.param ? ` (field: ${e.param})` : ""}`;
  }
  show(failure, Boolean(job.error));
  renderFacts(job);
  renderCancel(job);
  renderArtifacts(job);
  const fromSummary = job.metrics_summary && job.metrics_summary.translation;
  if (fromSummary && typeof fromSummary === "object") showTranslation(fromSummary);
}

// ---- cancel ------------------------------------------------------------------------------

function renderCancel(job) {
  const button = byId("cancel-job");
  const confirm = byId("cancel-confirm");
  const cancellable = job.status === "queued" || job.status === "running";
  show(byId("cancel-area"), !TERMINAL.has(job.status) || Boolean(byId("cancel-message").textContent));
  if (job.status === "cancelling") {
    button.disabled = true;
    button.textContent = "Cancelling…";
    show(confirm, false);
  } else {
    button.disabled = !cancellable;
    button.textContent = "Cancel job";
  }
  show(button, !TERMINAL.has(job.status));
}

function setupCancel() {
  const button = byId("cancel-job");
  const confirm = byId("cancel-confirm");
  const yes = byId("cancel-yes");
  const no = byId("cancel-no");
  const message = byId("cancel-message");
  button.addEventListener("click", () => {
    show(confirm);
    show(button, false);
    yes.focus();
  });
  no.addEventListener("click", () => {
    show(confirm, false);
    show(button);
    button.focus();
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      const job = await apiJson(jobPath(jobId, "/cancel"), { method: "POST" });
      message.textContent =
        job.status === "cancelled" ? "Job cancelled." : "Cancel requested; the worker stops within one step.";
      show(confirm, false);
      renderJob(job);
      schedulePoll(0);
    } catch (error) {
      message.textContent = `Could not cancel: ${error.message}`;
      show(button);
      show(confirm, false);
    } finally {
      yes.disabled = false;
    }
  });
}

// ---- artifacts ---------------------------------------------------------------------------

let artifactSignature = "";

function renderArtifacts(job) {
  const signature = job.artifacts.map((a) => `${a.name}:${a.sha256}`).join("|");
  if (signature === artifactSignature) return;
  artifactSignature = signature;
  const box = byId("artifacts");
  if (!job.artifacts.length) {
    replace(box, h("p", { class: "empty" }, TERMINAL.has(job.status) ? "This job left no artifacts." : "No artifacts yet."));
    return;
  }
  const rows = job.artifacts.map((a) => {
    const status = h("span", { class: "download-status", role: "status" });
    const button = h(
      "button",
      { type: "button", class: "secondary download", "data-artifact": a.name },
      `Download ${a.name}`,
    );
    button.addEventListener("click", () => download(a, button, status));
    return h(
      "tr",
      { "data-artifact": a.name },
      h("th", { scope: "row" }, a.name),
      h("td", {}, a.kind),
      h("td", { class: "num" }, bytes(a.size)),
      h("td", {}, h("code", { class: "sha", title: a.sha256 }, `${a.sha256.slice(0, 16)}…`)),
      h("td", {}, button, " ", status),
    );
  });
  const origin = window.location.origin;
  const first = job.artifacts[0];
  replace(
    box,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data-table compact", id: "artifact-table" },
        h("caption", { class: "visually-hidden" }, "Artifacts"),
        h(
          "thead",
          {},
          h("tr", {}, ["Name", "Kind", "Size", "sha256", "Download"].map((c) => h("th", { scope: "col" }, c))),
        ),
        h("tbody", {}, rows),
      ),
    ),
    h(
      "details",
      { class: "hint" },
      h("summary", {}, "Download from a terminal"),
      h(
        "pre",
        {},
        `curl -fOJ -H "Authorization: Bearer $CLO_API_KEY" ${origin}${first.download_url}\n` +
          `clo jobs download ${job.id}`,
      ),
    ),
  );
}

async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function download(artifact, button, status) {
  if (artifact.size > STREAM_ABOVE) return streamToDisk(artifact, button, status);
  button.disabled = true;
  status.textContent = "Downloading…";
  try {
    const response = await apiRequest(artifact.download_url);
    const blob = await response.blob();
    let note = "";
    if (crypto.subtle) {
      const digest = await sha256Hex(blob);
      if (digest !== artifact.sha256) {
        status.textContent = `Checksum mismatch: got ${digest.slice(0, 12)}…, expected ${artifact.sha256.slice(0, 12)}…`;
        return;
      }
      note = " (sha256 verified)";
    }
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: artifact.name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = `Saved ${artifact.name}${note}.`;
  } catch (error) {
    status.textContent = `Download failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function streamToDisk(artifact, button, status) {
  button.disabled = true;
  status.textContent = "Preparing a download link…";
  try {
    const link = await apiJson(`${artifact.download_url}/link`, { method: "POST" });
    const anchor = h("a", { href: link.url, download: artifact.name, hidden: true });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    status.textContent = `Streaming ${artifact.name} to disk; its sha256 is ${artifact.sha256}.`;
  } catch (error) {
    status.textContent = `Download failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---- curves, translation, evaluation -----------------------------------------------------

async function loadMetrics() {
  state.metricsLoadedAt = Date.now();
  let metrics;
  try {
    metrics = await apiJson(jobPath(jobId, "/metrics"));
  } catch (error) {
    if (error.status !== 401) replace(byId("curves"), h("p", { class: "error" }, `Could not load metrics: ${error.message}`));
    return;
  }
  const curves = metrics.curves || {};
  const signature = Object.entries(curves).map(([k, v]) => `${k}:${v.length}`).join("|");
  if (signature === state.metricsSignature) return;
  state.metricsSignature = signature;
  const box = byId("curves");
  if (!Object.keys(curves).length) {
    replace(box, h("p", { class: "empty" }, "No training metrics yet."));
    return;
  }
  replace(box, jobCharts(curves, state.job ? state.job.target_language : ""));
}

function showTranslation(report) {
  const signature = JSON.stringify(report);
  if (signature === state.translation) return;
  state.translation = signature;
  replace(byId("translation"), renderTranslation(report));
}

async function loadEvaluation() {
  state.evaluationShown = true;
  try {
    const data = await apiJson(jobPath(jobId, "/evaluation"));
    replace(byId("evaluation"), renderEvaluation(data.report));
  } catch (error) {
    state.evaluationShown = false;
    if (error.status !== 401) {
      replace(byId("evaluation"), h("p", { class: "error" }, `Could not load the evaluation: ${error.message}`));
    }
  }
}

function evaluationPlaceholder(job) {
  if (state.evaluationShown) return;
  const spec = job.spec || {};
  let text = "No evaluation report yet.";
  if (spec.evaluation && spec.evaluation.enabled === false) text = "Evaluation was turned off for this job.";
  else if (TERMINAL.has(job.status)) text = "This job ended without an evaluation report.";
  replace(byId("evaluation"), h("p", { class: "empty" }, text));
}

// ---- events ------------------------------------------------------------------------------

function addEvent(type, event) {
  const id = event && event.id;
  if (id !== undefined && state.seenEvents.has(id)) return;
  if (id !== undefined) state.seenEvents.add(id);
  const data = (event && event.data) || {};
  if (data && typeof data.n_kept === "number" && typeof data.n_input === "number") showTranslation(data);
  const list = byId("events");
  const when = event && event.created_at ? new Date(event.created_at).toLocaleTimeString() : "";
  list.append(
    h(
      "li",
      { "data-event-id": id, "data-type": type },
      h("span", { class: "event-time" }, when),
      " ",
      h("span", { class: `badge event-type status-${type}` }, type),
      " ",
      (event && event.message) || "",
    ),
  );
  while (list.children.length > MAX_EVENTS_SHOWN) list.firstElementChild.remove();
}

async function followStream() {
  const label = byId("stream-state");
  const text = {
    live: "Live: following the job's event stream.",
    reconnecting: "Connection lost; reconnecting…",
    ended: "The job has finished; all events are shown.",
  };
  const outcome = await followEvents(jobPath(jobId, "/events/stream"), {
    signal: state.stream.signal,
    onEvent: (type, event) => {
      addEvent(type, event);
      schedulePoll(0); // a new event usually means the job row changed too
    },
    onState: (s, error) => {
      label.textContent = s === "refused" ? `Event stream refused: ${error.message}` : text[s] || s;
    },
  });
  if (outcome === "refused") await pollEvents();
}

// Fallback when the stream is refused (a proxy that forbids streaming, say): page through
// GET /events instead.
async function pollEvents() {
  let after = 0;
  while (!state.stream.signal.aborted) {
    try {
      const page = await apiJson(`${jobPath(jobId, "/events")}?after=${after}`);
      page.data.forEach((e) => addEvent(e.type, e));
      after = page.last_id;
      if (state.job && TERMINAL.has(state.job.status) && !page.data.length) return;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS * 2));
  }
}

// ---- the poll loop -----------------------------------------------------------------------

function schedulePoll(delay = POLL_MS) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(poll, delay);
}

async function poll() {
  let job;
  try {
    job = await apiJson(jobPath(jobId));
  } catch (error) {
    if (error.status === 404) {
      fail(`Job ${jobId} not found. Check the id, or the API key: jobs of other keys' tenants are not visible.`);
      return;
    }
    if (error.status === 401) return;
    byId("progress-text").textContent = `Could not refresh: ${error.message}`;
    schedulePoll(POLL_MS * 3);
    return;
  }
  const before = state.job;
  const changed = !before || before.status !== job.status || before.stage !== job.stage;
  renderJob(job);
  const terminal = TERMINAL.has(job.status);
  if (job.evaluation_ready && !state.evaluationShown) loadEvaluation();
  else evaluationPlaceholder(job);
  const stale = Date.now() - state.metricsLoadedAt >= METRICS_MS;
  if (changed || (job.stage === "training" && stale)) loadMetrics();
  if (!terminal) schedulePoll();
}

async function start() {
  if (!jobId) {
    fail("No job id in the address.");
    return;
  }
  byId("job-id").textContent = jobId;
  setupCancel();
  await poll();
  if (!state.job) return;
  followStream();
}

markNav("");
withApiKey(start);
