// The base model beside the trained one (report schema 1.2, `versus_base`): the formats the
// job and compare pages share, and the job page's base | trained | Δ table.

import { fmt, h, isNum } from "./dom.js";

const MINUS = "\u2212";

// Whole percentage points: over tens or hundreds of prompts the intervals are several points
// wide, so a decimal would only suggest precision the numbers lack.
function points(value) {
  return Math.round(value * 100);
}

function signed(text, negative, zero) {
  if (zero) return text;
  return `${negative ? MINUS : "+"}${text}`;
}

function signedPoints(value) {
  const p = points(value);
  return signed(String(Math.abs(p)), p < 0, p === 0);
}

function signedNumber(value) {
  const text = Math.abs(value).toFixed(3);
  return signed(text, value < 0, Number(text) === 0);
}

const hasInterval = (i) => Boolean(i) && isNum(i.low) && isNum(i.high);

// "41% [33–50]": a rate and its Wilson 95% interval.
export function rateText(value, interval) {
  if (!isNum(value)) return "–";
  const text = `${points(value)}%`;
  return hasInterval(interval) ? `${text} [${points(interval.low)}–${points(interval.high)}]` : text;
}

// One side of a comparison: a rate with its interval, or a mean (NLL, perplexity) as is.
export function sideText(c, side) {
  const value = c[side];
  return c.kind === "rate" ? rateText(value, c[`${side}_interval`]) : fmt(value);
}

// "+12 pts [+4, +20]" for rates, "−0.062 [−0.090, −0.031]" for means: trained − base.
export function deltaText(c) {
  if (!c || !isNum(c.delta)) return "–";
  const one = c.kind === "rate" ? signedPoints : signedNumber;
  const text = c.kind === "rate" ? `${one(c.delta)} pts` : one(c.delta);
  if (!isNum(c.delta_low) || !isNum(c.delta_high)) return text;
  return `${text} [${one(c.delta_low)}, ${one(c.delta_high)}]`;
}

// Whether the difference is more than noise, in words (the report's own flag and direction).
export function verdictText(c) {
  if (!c || !isNum(c.delta)) return "–";
  if (c.distinguishable === true) {
    const better = c.delta > 0 === c.higher_is_better;
    return `${better ? "Better" : "Worse"} than the base model (distinguishable from zero)`;
  }
  if (c.distinguishable === false) return "Not distinguishable from the base model (the interval includes 0)";
  return "No interval for the difference (not paired)";
}

export function shortVerdict(c) {
  if (!c || c.distinguishable === null || c.distinguishable === undefined) return "";
  if (!c.distinguishable) return "not distinguishable";
  return c.delta > 0 === c.higher_is_better ? "better, distinguishable" : "worse, distinguishable";
}

// "heldout:16" -> "16 held-out examples"; "shipped:de@1a2b…" -> "the shipped de prompt set (1a2b…)"
export function describeSource(name) {
  const [kind, rest = ""] = String(name).split(/:(.*)/s);
  if (kind === "heldout") return `${rest} held-out examples of the job`;
  if (kind === "shipped") {
    const [lang, digest] = rest.split("@");
    return `the shipped ${lang} evaluation prompts${digest ? ` (set ${digest})` : ""}`;
  }
  return String(name);
}

function headline(targetName) {
  return [
    ["usable_rate_target", `Usable right-language answers, ${targetName} prompts`],
    ["usable_rate_english", "Usable right-language answers, English prompts"],
    ["pass_rate_target", `LCB line pass rate, ${targetName} prompts`],
    ["pass_rate_english", "LCB line pass rate, English prompts"],
    ["nll_target", `Held-out NLL, ${targetName} answers (nats/token)`],
  ];
}

// "failure_target_echo" -> "Answers failing: echo, German prompts", and so on.
function metricLabel(name, targetName) {
  const side = (s) => (s === "target" ? `${targetName} prompts` : "English prompts");
  const failure = name.match(/^failure_(target|english)_(.+)$/);
  if (failure) return `Answers failing: ${failure[2].replace(/_/g, " ")}, ${side(failure[1])}`;
  if (name === "english_bias") return `English bias (${targetName} prompts answered in English)`;
  const sided = name.match(/^(.+)_(target|english)$/);
  if (sided) return `${sided[1].replace(/_/g, " ")}, ${side(sided[2])}`;
  return name.replace(/_/g, " ");
}

function comparisonRow(name, label, c) {
  return h(
    "tr",
    { "data-metric": name, "data-distinguishable": c.distinguishable === true ? "yes" : "no" },
    h("th", { scope: "row" }, label),
    h("td", { class: "num", "data-side": "base" }, sideText(c, "base")),
    h("td", { class: "num", "data-side": "trained" }, sideText(c, "trained")),
    h("td", { class: "num", "data-side": "delta" }, deltaText(c)),
    h("td", { class: "verdict-cell", title: c.verdict || null }, verdictText(c)),
  );
}

function comparisonTable(caption, rows, attrs = {}) {
  const head = ["Metric", "Base", "Trained", "Δ (trained − base)", "Verdict"];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "data-table compact versus", ...attrs },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { scope: "col", class: i && i < 4 ? "num" : "" }, c)))),
      h("tbody", {}, rows),
    ),
  );
}

const count = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function baseFacts(report, vb) {
  const base = vb.base;
  const how = base.how === "adapter_disabled" ? "the trained model with its adapter off" : "loaded on its own";
  const cache = base.cached
    ? `every base answer came from the cache (${count(base.cache_hits, "hit")})`
    : `${count(base.generated_answers, "base answer")} generated, ` +
      `${count(base.scored_benchmarks, "benchmark run")} scored ` +
      `(${count(base.cache_hits, "cache hit")}, ${count(base.cache_misses, "miss", "misses")})`;
  return h(
    "ul",
    { class: "facts-list", id: "versus-facts" },
    h("li", { "data-fact": "base" }, `Base model: ${base.model} (${how}).`),
    h("li", { "data-fact": "cache" }, `Base results: ${cache}.`),
    h("li", { "data-fact": "sources" }, `Prompts: ${sourcesText(report, vb)}.`),
  );
}

function sourcesText(report, vb) {
  const sources = report.prompt_sources || [];
  if (!sources.length) return "the held-out examples of the job";
  return sources
    .map((s) => {
      const n = vb?.by_source?.[s]?.usable_rate_target?.n;
      return `${describeSource(s)}${isNum(n) ? `, ${n} prompts` : ""}`;
    })
    .join("; ");
}

function bySourceTable(vb, targetName) {
  const sources = Object.entries(vb.by_source || {});
  if (!sources.length) return null;
  const rows = sources.flatMap(([source, metrics]) =>
    ["usable_rate_target", "usable_rate_english"]
      .filter((m) => metrics[m])
      .map((m) =>
        comparisonRow(
          `${source}/${m}`,
          `${describeSource(source)}: ${m.endsWith("target") ? targetName : "English"} prompts`,
          metrics[m],
        ),
      ),
  );
  return comparisonTable("Usable right-language answers per prompt source", rows, { id: "versus-by-source" });
}

// A report without versus_base (written before schema 1.2): the trained figures only.
function trainedOnly(report, targetName) {
  const lang = report.language || {};
  const t = lang.target_prompts || {};
  const e = lang.english_prompts || {};
  const nll = report.preference?.nll?.target?.nll;
  const rows = [
    [`Usable right-language answers, ${targetName} prompts`, rateText(t.usable_rate, t.usable_interval)],
    ["Usable right-language answers, English prompts", rateText(e.usable_rate, e.usable_interval)],
    [`LCB line pass rate, ${targetName} prompts`, rateText(t.pass_rate, t.pass_rate_interval)],
    ["LCB line pass rate, English prompts", rateText(e.pass_rate, e.pass_rate_interval)],
    [`Held-out NLL, ${targetName} answers (nats/token)`, fmt(nll)],
  ];
  return h(
    "section",
    { class: "eval-block", "data-section": "versus-base", id: "versus-base" },
    h("h3", {}, "Compared with the base model"),
    h(
      "p",
      { class: "notice", id: "versus-missing" },
      `This report (schema ${report.schema_version}) has no base-model figures: it was written ` +
        "before evaluations scored the base model on the same prompts. The trained model's own figures:",
    ),
    comparisonTable(
      "Trained model (95% intervals where the report has them)",
      rows.map(([label, value]) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, label),
          h("td", { class: "num", "data-side": "base" }, "–"),
          h("td", { class: "num", "data-side": "trained" }, value),
          h("td", { class: "num", "data-side": "delta" }, "–"),
          h("td", {}, "–"),
        ),
      ),
      { id: "versus-table" },
    ),
    h("p", { class: "hint" }, `Prompts: ${sourcesText(report, null)}.`),
  );
}

export function versusSection(report, targetName) {
  const vb = report.versus_base;
  if (!vb || !vb.metrics) return trainedOnly(report, targetName);
  const shown = headline(targetName).filter(([name]) => vb.metrics[name]);
  const rest = Object.entries(vb.metrics).filter(([name]) => !shown.some(([n]) => n === name));
  const confidence = Math.round((vb.confidence || 0.95) * 100);
  return h(
    "section",
    { class: "eval-block", "data-section": "versus-base", id: "versus-base" },
    h("h3", {}, "Compared with the base model"),
    baseFacts(report, vb),
    comparisonTable(
      `Base and trained model on the same prompts and decoding ([brackets]: ${confidence}% intervals)`,
      shown.map(([name, label]) => comparisonRow(name, label, vb.metrics[name])),
      { id: "versus-table" },
    ),
    h(
      "p",
      { class: "hint" },
      "Rates: Wilson intervals; Δ: paired bootstrap over the prompts " +
        `(${vb.bootstrap_resamples} resamples). A usable answer is in the right language and is ` +
        "neither empty, an echo of the prompt nor a repetition loop; the LCB line pass rate " +
        "checks the language line by line, as published results do.",
    ),
    rest.length
      ? h(
          "details",
          { class: "versus-more" },
          h("summary", {}, `Every compared metric (${Object.keys(vb.metrics).length})`),
          comparisonTable(
            "The other metrics with a base value",
            rest.map(([name, c]) => comparisonRow(name, metricLabel(name, targetName), c)),
            { id: "versus-all" },
          ),
          bySourceTable(vb, targetName),
        )
      : bySourceTable(vb, targetName),
  );
}
