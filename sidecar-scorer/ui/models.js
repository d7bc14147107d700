// The model monitor's two reads, drift per feature and estimated against realised
// performance (GET /v1/models/{name}/drift and /performance). A scorer without the
// monitor, or a model it does not watch, answers 404: the panel says "not available"
// with the scorer's words. Otherwise the answers are read loosely, so that a change of
// their shape needs changes here only:
//
// - drift: `versions[]` (or the answer itself as one version); per version the newest
//   window (`latest`, else the last of `windows`) with a `features[]` list of objects
//   named by `name`, each shown as a row of its scalar figures, nested objects
//   flattened (`statistics.psi`); a `prediction` entry is one more row; a `dataset`
//   object gives the dataset's verdict;
// - performance: `versions[]` (or the answer itself); per version the newest of
//   `windows[]` with `estimated` and `realised` objects shown side by side, the
//   `reference` figures beside them, and any other scalar figures of the version.

import { h, panel, table } from "./dom.js";
import { count, dateTime, num, words } from "./format.js";

/** Scalar figures of an object, nested objects flattened to dotted keys. */
export function flatten(value, prefix = "", out = {}) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    if (prefix && (value === null || typeof value !== "object")) out[prefix] = value;
    return out;
  }
  for (const [key, inner] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) flatten(inner, name, out);
    else if (!Array.isArray(inner)) out[name] = inner;
  }
  return out;
}

/**
 * Figures keyed by the last part of their name (`estimate.precision` → `precision`)
 * where that is unambiguous, so that an estimate, a realised figure and a reference
 * figure of the same measure line up.
 */
function byLeaf(flat) {
  const leaves = {};
  for (const key of Object.keys(flat)) {
    const leaf = key.split(".").pop();
    leaves[leaf] = leaves[leaf] === undefined ? key : null;
  }
  const out = {};
  for (const [key, value] of Object.entries(flat)) {
    const leaf = key.split(".").pop();
    out[leaves[leaf] === key ? leaf : key] = value;
  }
  return out;
}

/** A figure as text; `key` tells a time (`..._ms`) from a count. */
function cell(value, key = "") {
  if (typeof value === "number" && /_ms$/.test(key) && value > 1e12) return dateTime(value);
  if (typeof value === "number") return Number.isInteger(value) ? count(value) : num(value, 4);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (value === null || value === undefined) return "–";
  return words(value);
}

function versionsOf(data) {
  if (data && Array.isArray(data.versions)) return data.versions;
  return data ? [data] : [];
}

function versionLabel(version, model) {
  if (version && version.version !== undefined) return `${model} v${version.version}`;
  return model;
}

const VERDICT = /verdict|drift|alarm|finding/i;

/** Rows of per-feature figures from a drift window. */
function featureTable(window) {
  const rows = [];
  for (const feature of Array.isArray(window.features) ? window.features : []) rows.push(feature);
  if (window.prediction && typeof window.prediction === "object") rows.push({ ...window.prediction, name: window.prediction.name || "prediction" });
  if (!rows.length) return null;
  const flat = rows.map((r) => flatten(r));
  const columns = [];
  for (const f of flat) for (const key of Object.keys(f)) if (key !== "name" && !columns.includes(key)) columns.push(key);
  // Verdicts first, then the statistics, in their first appearance.
  columns.sort((a, b) => Number(VERDICT.test(b)) - Number(VERDICT.test(a)));
  const numericColumns = new Set(columns.filter((c) => flat.some((f) => typeof f[c] === "number")));
  const titles = byLeaf(Object.fromEntries(columns.map((c) => [c, c])));
  const title = Object.fromEntries(Object.entries(titles).map(([shown, key]) => [key, shown]));
  return h(
    "div",
    { class: "scroll" },
    table(
      ["feature", ...columns.map((c) => h("th", { class: numericColumns.has(c) ? "num" : null }, words(title[c])))],
      flat.map((f) =>
        h(
          "tr",
          { "data-feature": f.name },
          h("th", { scope: "row" }, String(f.name)),
          columns.map((c) => h("td", { class: numericColumns.has(c) ? "num" : VERDICT.test(c) ? `verdict v-${f[c]}` : null }, cell(f[c], c))),
        ),
      ),
      { class: "figures" },
    ),
  );
}

function figureList(object) {
  const flat = flatten(object);
  const keys = Object.keys(flat);
  if (!keys.length) return null;
  return h("dl", { class: "figures-list" }, keys.map((k) => [h("dt", null, words(k)), h("dd", null, cell(flat[k], k))]));
}

function unavailable(name, title, answer, reason, path) {
  const status = answer ? ` (${answer.status} from GET ${path})` : "";
  return panel(name, title, null, h("p", { class: "unavailable", "data-state": "unavailable" }, `Not available${status}: ${reason(answer)}`));
}

/**
 * The drift panel of one model: `answer` is what `get` gave for `path` ({status, ok,
 * data}), `reason(answer)` the message of an error answer.
 */
export function driftPanel(model, answer, reason, path) {
  const title = `Drift per feature: ${model}`;
  if (!answer || !answer.ok) return unavailable("drift", title, answer, reason, path);
  const blocks = versionsOf(answer.data).map((version) => {
    const windows = Array.isArray(version.windows) ? version.windows : [];
    const latest = version.latest || windows[windows.length - 1] || version;
    const dataset = latest.dataset ? figureList(latest.dataset) : null;
    const features = featureTable(latest);
    return h(
      "div",
      { class: "model-version", "data-version": version.version ?? "" },
      h("h3", null, versionLabel(version, model)),
      dataset ? [h("h4", null, "Dataset"), dataset] : null,
      features || h("p", { class: "muted" }, "No window judged yet."),
      Array.isArray(version.findings) && version.findings.length ? [h("h4", null, "Findings"), h("ul", null, version.findings.map((f) => h("li", null, typeof f === "object" ? Object.entries(flatten(f)).map(([k, v]) => `${words(k)} ${cell(v, k)}`).join(" · ") : cell(f))))] : null,
    );
  });
  return panel("drift", title, null, h("div", { "data-state": "available" }, blocks.length ? blocks : h("p", { class: "muted" }, "No version watched.")));
}

/** The estimated-against-realised panel of one model. */
export function performancePanel(model, answer, reason, path) {
  const title = `Estimated vs realised performance: ${model}`;
  if (!answer || !answer.ok) return unavailable("performance", title, answer, reason, path);
  const blocks = versionsOf(answer.data).map((version) => {
    const windows = Array.isArray(version.windows) ? version.windows : [];
    const latest = [...windows].reverse().find((w) => w && (w.estimated || w.realised)) || {};
    const estimated = byLeaf(flatten(latest.estimated || {}));
    const realised = byLeaf(flatten(latest.realised || {}));
    const reference = byLeaf(flatten(version.reference || {}));
    const keys = [...new Set([...Object.keys(estimated), ...Object.keys(realised)])];
    const rest = { ...version };
    for (const k of ["windows", "reference", "version", "served_by", "uri"]) delete rest[k];
    return h(
      "div",
      { class: "model-version", "data-version": version.version ?? "" },
      h("h3", null, versionLabel(version, model)),
      keys.length
        ? table(
            ["figure", "reference", "estimated (latest window)", `realised (${count(latest.labelled)} labelled)`],
            keys.map((k) => h("tr", null, h("th", { scope: "row" }, words(k)), h("td", { class: "num" }, cell(reference[k])), h("td", { class: "num" }, cell(estimated[k])), h("td", { class: "num" }, cell(realised[k])))),
            { class: "figures" },
          )
        : h("p", { class: "muted" }, "No window with an estimate yet."),
      figureList(rest),
    );
  });
  return panel("performance", title, null, h("div", { "data-state": "available" }, blocks.length ? blocks : h("p", { class: "muted" }, "No version watched.")));
}
