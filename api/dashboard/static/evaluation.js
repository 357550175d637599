// Renders an evaluation report (clo.evaluate.report.EvaluationReport, schema 1.x) and the
// translation quality counts.

import { winRateChart } from "./charts.js";
import { fmt, h, isNum, pct } from "./dom.js";
import { versusSection } from "./versus.js";

const VERDICTS = {
  pass: "right language",
  fail: "wrong language",
  no_kept_lines: "too short to check",
};

function table(caption, head, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "data-table compact", ...attrs },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { scope: "col", class: i ? "num" : "" }, c)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, row.map((c, i) => (i ? h("td", { class: "num" }, c) : h("th", { scope: "row" }, c)))),
        ),
      ),
    ),
  );
}

function languageSection(language, targetName) {
  const rate = (label, r) => [
    label,
    r.expected_language,
    String(r.total),
    String(r.judged),
    String(r.passed),
    String(r.failed),
    String(r.no_kept_lines),
    pct(r.pass_rate),
    pct(r.english_rate),
  ];
  return h(
    "section",
    { class: "eval-block", "data-section": "language" },
    h("h3", {}, "Right-language rate"),
    table(
      `Answers in the prompt's language (detector: ${language.detector})`,
      ["Prompts", "Expected", "Answers", "Judged", "Passed", "Failed", "Too short", "Pass rate", "In English"],
      [
        rate(`${targetName} prompts`, language.target_prompts),
        rate("English prompts", language.english_prompts),
      ],
      { id: "language-rates" },
    ),
    h(
      "p",
      { class: "hint" },
      `English bias (target-language prompts answered in English): ${pct(language.english_bias)}. ` +
        `Lines under ${language.min_words_per_line} words are not checked.`,
    ),
  );
}

function preferenceSection(pref, targetName) {
  const dirLabel = (d) => (d === "en" ? "English prompts" : `${targetName} prompts`);
  const dirs = ["tgt", "en"].filter((d) => pref.directions[d]);
  const nll = Object.entries(pref.nll || {});
  return h(
    "section",
    { class: "eval-block", "data-section": "preference" },
    h("h3", {}, "Preference accuracy"),
    table(
      `Held-out preference pairs (β = ${fmt(pref.beta)}, reference: ${pref.reference})`,
      ["Direction", "Pairs", "Reward accuracy", "Reward margin", "Log-prob accuracy"],
      dirs.map((d) => {
        const s = pref.directions[d];
        return [dirLabel(d), String(s.n), pct(s.accuracy), fmt(s.reward_margin_mean), pct(s.logp_accuracy)];
      }),
      { id: "preference-table" },
    ),
    nll.length
      ? table(
          "Held-out NLL of the reference answers",
          ["Answers", "Sequences", "Tokens", "NLL (nats/token)", "Perplexity"],
          nll.map(([name, s]) => [name, String(s.sequences), String(s.tokens), fmt(s.nll), fmt(s.perplexity)]),
        )
      : null,
  );
}

function benchmarkSection(benchmarks) {
  return h(
    "section",
    { class: "eval-block", "data-section": "benchmarks" },
    h("h3", {}, "Benchmark accuracy"),
    table(
      "Multiple choice (highest log-prob option)",
      ["Benchmark", "Language", "Questions", "Accuracy", "Accuracy (byte-normalised)"],
      benchmarks.map((b) => [b.benchmark, b.language, String(b.n), pct(b.accuracy), pct(b.accuracy_norm)]),
      { id: "benchmark-table" },
    ),
  );
}

function judgeSection(judge, targetName) {
  const label = (key) => (key === "en" ? "English prompts" : `${targetName} prompts`);
  const keys = ["tgt", "en"].filter((k) => judge.results[k]);
  const rows = keys.map((k) => {
    const r = judge.results[k];
    return { label: label(k), rate: r.win_rate, stderr: r.stderr, n: r.n };
  });
  const judgeName = [judge.judge.kind, judge.judge.model].filter(Boolean).join(" ");
  return h(
    "section",
    { class: "eval-block", "data-section": "judge" },
    h("h3", {}, "Win rate against the baseline"),
    h("p", { class: "hint" }, `Judge: ${judgeName}; baseline: ${judge.baseline}. Bars show 95% intervals (±1.96 s.e.); 0.5 is parity.`),
    h("figure", { class: "chart wide" }, winRateChart(rows)),
    table(
      "Judged pairs (both answer orders)",
      ["Prompts", "Pairs", "Wins", "Ties", "Losses", "Win rate", "Order-inconsistent", "Invalid"],
      keys.map((k) => {
        const r = judge.results[k];
        const value = isNum(r.win_rate)
          ? `${fmt(r.win_rate, 3)}${isNum(r.stderr) ? ` ± ${fmt(1.96 * r.stderr, 2)}` : ""}`
          : "–";
        return [label(k), String(r.n), String(r.wins), String(r.ties), String(r.losses), value,
          String(r.position_inconsistent), String(r.invalid_verdicts)];
      }),
      { id: "winrate-table" },
    ),
    judge.samples && judge.samples.length
      ? h(
          "details",
          { class: "samples" },
          h("summary", {}, `Judged answers (${judge.samples.length})`),
          judge.samples.map((s) =>
            h(
              "article",
              { class: "sample" },
              h("p", {}, h("strong", {}, `${s.outcome}`), ` · ${s.prompt_language} prompt`),
              h("p", { class: "prompt" }, s.prompt),
              h("p", { class: "label" }, "Model"),
              h("p", { class: "answer" }, s.model_answer),
              h("p", { class: "label" }, "Baseline"),
              h("p", { class: "answer" }, s.baseline_answer),
            ),
          ),
        )
      : null,
  );
}

function samplesSection(samples) {
  return h(
    "section",
    { class: "eval-block", "data-section": "samples" },
    h("h3", {}, `Sample answers (${samples.length})`),
    h(
      "div",
      { class: "samples", id: "answer-samples" },
      samples.map((s) =>
        h(
          "article",
          { class: `sample verdict-${s.verdict}`, "data-verdict": s.verdict },
          h(
            "p",
            { class: "sample-head" },
            h("span", { class: `badge verdict ${s.verdict}` }, VERDICTS[s.verdict] || s.verdict),
            ` ${s.prompt_language} prompt`,
          ),
          h("p", { class: "prompt" }, s.prompt),
          h("p", { class: "answer" }, s.answer || "(empty answer)"),
          s.lines && s.lines.length
            ? h(
                "details",
                {},
                h("summary", {}, "Per-line language"),
                h(
                  "ul",
                  { class: "lines" },
                  s.lines.map((line) =>
                    h(
                      "li",
                      {},
                      `${line.kept ? line.language || "undecided" : "not checked"}` +
                        `${line.ok === true ? " ✓" : line.ok === false ? " ✗" : ""}: `,
                      line.text,
                    ),
                  ),
                ),
              )
            : null,
        ),
      ),
    ),
  );
}

export function renderEvaluation(report) {
  const targetName = report.target_language_name || report.target_language;
  const parts = [
    h(
      "p",
      { class: "hint" },
      `Model ${report.model} · ${targetName} (${report.target_language}) · ` +
        `${report.heldout_size} held-out examples · schema ${report.schema_version}`,
    ),
    // base | trained | Δ first: whether the job changed the model is the first question
    versusSection(report, targetName),
  ];
  if (report.language) parts.push(languageSection(report.language, targetName));
  if (report.preference) parts.push(preferenceSection(report.preference, targetName));
  if (report.benchmarks && report.benchmarks.length) parts.push(benchmarkSection(report.benchmarks));
  if (report.judge) parts.push(judgeSection(report.judge, targetName));
  if (report.language && report.language.samples && report.language.samples.length) {
    parts.push(samplesSection(report.language.samples));
  }
  const skipped = Object.entries(report.skipped || {});
  if (skipped.length) {
    parts.push(
      h(
        "section",
        { class: "eval-block" },
        h("h3", {}, "Not computed"),
        h("ul", {}, skipped.map(([what, why]) => h("li", {}, h("strong", {}, what), `: ${why}`))),
      ),
    );
  }
  return parts;
}

// Translation report of the translate stage (clo.translate): kept / dropped by reason / cache.
export function renderTranslation(report) {
  const rows = [
    ["Seed examples", report.n_input],
    ["Kept", report.n_kept],
    ["Dropped", report.n_dropped],
  ];
  for (const [reason, n] of Object.entries(report.dropped_by_reason || {})) {
    if (n) rows.push([`  dropped: ${reason}`, n]);
  }
  for (const [reason, n] of Object.entries(report.flagged_by_reason || {})) {
    if (n) rows.push([`  flagged: ${reason}`, n]);
  }
  rows.push(
    ["Recovered by retry", report.recovered_by_retry],
    ["Segments translated", report.segments_translated],
    ["Cache hits", report.cache_hits],
    ["Model calls", report.model_calls],
  );
  const shown = rows.filter(([, v]) => v !== undefined && v !== null);
  const model = report.model ? ` with ${report.model}` : report.source ? ` (${report.source})` : "";
  return [
    table(
      `Translated ${report.source_language || "en"} → ${report.target_language || "target"}${model}`,
      ["", "Count"],
      shown.map(([k, v]) => [k, typeof v === "number" ? String(v) : String(v)]),
      { id: "translation-table" },
    ),
  ];
}
