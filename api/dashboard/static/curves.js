// Which training curves go on which chart: the known CLO metrics first, in a fixed order,
// then one chart for every other metric name the API returns.

import { lineChart, seriesClass } from "./charts.js";

export const CURVE_GROUPS = [
  { title: "Loss", keys: ["loss"] },
  { title: "NLL (target answers)", keys: ["nll"] },
  { title: "CL loss", keys: ["cl_loss"] },
  { title: "Reward margin per direction", keys: ["margin_tgt", "margin_en"] },
  { title: "Reward accuracy per direction", keys: ["accuracy_tgt", "accuracy_en"] },
  { title: "Learning rate", keys: ["lr"] },
  { title: "Tokens / second", keys: ["tokens_per_second"] },
  { title: "Gradient norm", keys: ["grad_norm"] },
];

const DASHES = ["", "dash"];

export function curveLabel(key, language) {
  const direction = key.match(/_(tgt|en)$/);
  if (direction) return direction[1] === "en" ? "English prompts" : `${language || "target"} prompts`;
  return key;
}

// The groups present in `curves` (an object name -> points), known ones first.
export function groupsFor(curveNames) {
  const names = new Set(curveNames);
  const groups = [];
  for (const group of CURVE_GROUPS) {
    const keys = group.keys.filter((k) => names.has(k));
    keys.forEach((k) => names.delete(k));
    if (keys.length) groups.push({ title: group.title, keys });
  }
  for (const name of [...names].sort()) groups.push({ title: name, keys: [name] });
  return groups;
}

// Charts for one job.
export function jobCharts(curves, language) {
  return groupsFor(Object.keys(curves)).map((group) =>
    lineChart({
      title: group.title,
      metric: group.keys.join(","),
      series: group.keys.map((key, i) => ({
        label: group.keys.length > 1 ? curveLabel(key, language) : key,
        points: curves[key],
        cls: seriesClass(i),
        dash: DASHES[i % DASHES.length],
      })),
    }),
  );
}

// Overlaid charts for several jobs: colour per job, dash per direction.
export function compareCharts(runs) {
  const names = new Set();
  runs.forEach((run) => Object.keys(run.curves).forEach((n) => names.add(n)));
  return groupsFor([...names]).map((group) => {
    const series = [];
    runs.forEach((run, jobIndex) => {
      group.keys.forEach((key, keyIndex) => {
        if (!run.curves[key]) return;
        const suffix = group.keys.length > 1 ? ` · ${curveLabel(key, run.language)}` : "";
        series.push({
          label: `${run.label}${suffix}`,
          points: run.curves[key],
          cls: seriesClass(jobIndex),
          dash: DASHES[keyIndex % DASHES.length],
        });
      });
    });
    return lineChart({ title: group.title, metric: group.keys.join(","), series });
  });
}
