// The dashboard: /ui lists the rollouts, /ui/rollouts/{name} shows one. Every figure
// is read from the scorer's JSON API (docs/ui.md says which endpoint gives which) and
// the page reads it again every two seconds.

import { errorMessage, get, paths, scorerNow } from "./api.js";
import { forestPlot, outcomeStrip, OUTCOME_COLOURS, PALETTE, shareMeter, swatch, timeChart } from "./charts.js";
import { disclosure, fill, h, panel, s, table } from "./dom.js";
import { ago, clock, count, dateTime, metricFormat, ms, num, perSecond, share, signedShare, span, weight, words } from "./format.js";
import { driftPanel, flatten, performancePanel } from "./models.js";

const POLL_MS = 2000;
/** How far back the traffic charts reach. */
const TELEMETRY_SPAN_MS = 10 * 60 * 1000;
/** A 404 from an optional endpoint is asked again only after this long. */
const ABSENT_RETRY_MS = 30 * 1000;
/** Who changes a rollout on their own: their changes are decisions with evidence. */
const AUTOMATED = new Set(["controller", "analysis", "guardrail", "shadow_gate", "gate", "experiment", "retraining"]);
/** Keys of an event's details that every event has; the rest is its evidence. */
const PLAIN_DETAILS = new Set(["weights", "status", "step", "mode", "steps", "replica"]);

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const banner = document.getElementById("banner");
const freshness = document.getElementById("freshness");

function route() {
  const path = location.pathname.replace(/\/+$/, "");
  const match = path.match(/^\/ui\/rollouts\/([^/]+)$/);
  return match ? { page: "rollout", name: decodeURIComponent(match[1]) } : { page: "list" };
}

// ---------------------------------------------------------------- shared pieces

function statusBadge(status, attrs) {
  return h("span", { class: `badge status-${status}`, ...attrs }, words(status));
}

function variantColour(variants, name) {
  const i = variants.findIndex((v) => v.name === name);
  return PALETTE[(i < 0 ? variants.length : i) % PALETTE.length];
}

/** A stacked bar of the weights, and the weights written out. */
function weightsBar(variants, weights) {
  let x = 0;
  const parts = variants.map((v) => {
    const w = Number(weights[v.name] ?? 0);
    const rect = s("rect", { x, y: 0, width: w, height: 10, fill: variantColour(variants, v.name) }, s("title", null, `${v.name} ${weight(w)}`));
    x += w;
    return rect;
  });
  return s("svg", { class: "weights-bar", viewBox: "0 0 100 10", preserveAspectRatio: "none", role: "img", "aria-label": "weights" }, s("rect", { class: "track", x: 0, y: 0, width: 100, height: 10 }), parts);
}

function weightsText(variants, weights) {
  return variants.map((v) => `${v.name} ${weight(Number(weights[v.name] ?? 0))}`).join(" · ");
}

function stepText(rollout) {
  if (rollout.step === null || rollout.step === undefined) return rollout.steps.length ? "no schedule running" : "no steps";
  return `step ${rollout.step + 1} of ${rollout.steps.length}`;
}

function currentWeights(rollout) {
  return Object.fromEntries(rollout.variants.map((v) => [v.name, v.weight]));
}

function keyValues(object, units = {}) {
  const flat = flatten(object);
  const keys = Object.keys(flat);
  if (!keys.length) return null;
  return h(
    "dl",
    { class: "figures-list" },
    keys.map((k) => {
      const unit = units[k];
      const v = flat[k];
      const text = typeof v === "number" ? (unit ? unit(v) : num(v, 4)) : v === null ? "–" : typeof v === "boolean" ? (v ? "yes" : "no") : String(v);
      return [h("dt", null, words(k)), h("dd", null, text)];
    }),
  );
}

/** A column title over figures: aligned right, as they are. */
function numeric(title) {
  return h("th", { class: "num" }, title);
}

function muted(text) {
  return h("p", { class: "muted" }, text);
}

/** Answers of endpoints that may not exist, asked again after a while when absent. */
const optionalAnswers = new Map();

async function getOptional(path) {
  const cached = optionalAnswers.get(path);
  if (cached && cached.until > Date.now()) return cached.answer;
  const answer = await get(path);
  optionalAnswers.set(path, { answer, until: answer.status === 404 ? Date.now() + ABSENT_RETRY_MS : 0 });
  return answer;
}

/** Model names the variants serve (`models:/NAME/VERSION`), each once. */
function modelsOf(variants) {
  const names = [];
  for (const v of variants) {
    const match = typeof v.model === "string" && v.model.match(/^models:\/([^/]+)\/(\d+)$/);
    if (match && !names.includes(match[1])) names.push(match[1]);
  }
  return names;
}

// ---------------------------------------------------------------- the list

async function showList() {
  const [rollouts, alerts] = await Promise.all([get(paths.rollouts()), get(paths.firingAlerts())]);
  if (!rollouts.ok) throw new Error(errorMessage(rollouts));
  const now = scorerNow();
  const list = rollouts.data.rollouts;
  document.title = "outrider: rollouts";
  fill(crumbs, h("span", null, "rollouts"));
  const rows = list.map((r) => {
    const weights = currentWeights(r);
    return h(
      "tr",
      { "data-rollout": r.name },
      h("th", { scope: "row" }, h("a", { href: `/ui/rollouts/${encodeURIComponent(r.name)}` }, r.name)),
      h("td", null, words(r.mode)),
      h("td", null, statusBadge(r.status, { "data-field": "status", "data-value": r.status })),
      h("td", { "data-field": "step", "data-value": r.step ?? "none" }, stepText(r)),
      h(
        "td",
        { class: "weights" },
        weightsBar(r.variants, weights),
        h(
          "div",
          { class: "weights-text" },
          r.variants.map((v) => h("span", { "data-weight-of": v.name, "data-value": v.weight }, `${v.name} ${weight(v.weight)}`)),
        ),
      ),
      h("td", { class: "num" }, count(r.version)),
      h("td", null, ago(r.updated_ms, now)),
    );
  });
  fill(
    main,
    h(
      "div",
      { class: "panels" },
      panel(
        "rollouts",
        "Rollouts",
        `${list.length} rollout${list.length === 1 ? "" : "s"}; open one for its traffic, analysis and history.`,
        list.length ? table(["rollout", "mode", "status", "step", "weights (%)", numeric("version"), "changed"], rows, { class: "rollouts" }) : muted("No rollout yet: create one with POST /v1/rollouts or `outrider-scorer rollout create`."),
      ),
      alertsPanel(alerts, null, now),
    ),
  );
}

function alertsPanel(alerts, rolloutName, now) {
  if (!alerts.ok) return panel("alerts", "Firing alerts", null, muted(`Not available: ${errorMessage(alerts)}`));
  const firing = alerts.data.alerts.filter((a) => rolloutName === null || a.labels.rollout === rolloutName);
  return panel(
    "alerts",
    "Firing alerts",
    rolloutName === null ? null : `Alerts about ${rolloutName} (GET /v1/alerts?firing=true).`,
    firing.length
      ? h(
          "ul",
          { class: "alerts" },
          firing.map((a) =>
            h(
              "li",
              { class: `alert severity-${a.labels.severity}`, "data-alert": a.labels.alertname },
              h("div", { class: "alert-head" }, h("strong", null, a.labels.alertname), h("span", { class: "badge" }, a.labels.severity || "alert"), a.labels.rollout ? h("span", null, `rollout ${a.labels.rollout}`) : null, h("span", { class: "muted" }, `firing since ${clock(a.starts_ms)} (${ago(a.starts_ms, now)})`)),
              h("p", null, a.annotations.description || a.annotations.summary || ""),
            ),
          ),
        )
      : muted("None firing."),
  );
}

// ---------------------------------------------------------------- one rollout

async function showRollout(name) {
  const now = scorerNow();
  const fromMs = Math.floor((now - TELEMETRY_SPAN_MS) / 1000) * 1000;
  const [rollout, events, analysis, telemetry, shadow, alerts] = await Promise.all([
    get(paths.rollout(name)),
    get(paths.events(name)),
    get(paths.analysis(name)),
    get(paths.telemetry(name, fromMs)),
    get(paths.shadow(name)),
    get(paths.firingAlerts()),
  ]);
  fill(crumbs, h("a", { href: "/ui" }, "rollouts"), " / ", h("span", null, name));
  document.title = `outrider: ${name}`;
  if (rollout.status === 404) {
    fill(main, panel("missing", `No rollout named ${name}`, null, muted(errorMessage(rollout)), h("p", null, h("a", { href: "/ui" }, "All rollouts"))));
    return;
  }
  for (const answer of [rollout, events, analysis, telemetry, shadow]) {
    if (!answer.ok) throw new Error(errorMessage(answer));
  }
  const r = rollout.data;
  const experiment = r.mode === "ab" ? await get(paths.experiment(name)) : null;
  const models = modelsOf(r.variants);
  const modelAnswers = await Promise.all(
    models.map(async (model) => {
      const [jobs, drift, performance] = await Promise.all([get(paths.jobs(model)), getOptional(paths.drift(model)), getOptional(paths.performance(model))]);
      return { model, jobs, drift, performance };
    }),
  );
  const spec = analysis.data.analysis;
  const history = events.data.events;
  const at = scorerNow();

  fill(
    main,
    header(r, at),
    h(
      "div",
      { class: "panels" },
      decisionPanel(history, spec, at),
      weightsPanel(r, history, at),
      alertsPanel(alerts, name, at),
      trafficPanel(r, telemetry.data, fromMs, at),
      analysisPanel(r, analysis.data),
      experiment ? experimentPanel(r, experiment) : null,
      shadowPanel(shadow.data),
      modelAnswers.map((m) => modelPanels(m, at)),
      timelinePanel(r, history, spec),
    ),
  );
}

function header(r, now) {
  const notes = [];
  if (r.held) notes.push(h("p", { class: "note held" }, `Held by gate ${words(r.held.gate)} since ${clock(r.held.at_ms)}: it answered ${r.held.status ?? "nothing"} ${r.held.message}`));
  if (r.awaiting_promotion) notes.push(h("p", { class: "note" }, "The analysis passed: the switch waits for a person to promote."));
  if (r.rollback_window_until_ms) notes.push(h("p", { class: "note" }, `A rollback is one switch back until ${dateTime(r.rollback_window_until_ms)} (${ago(r.rollback_window_until_ms, now)}).`));
  return h(
    "section",
    { class: "rollout-head", id: "rollout", "data-name": r.name },
    h("div", { class: "title-row" }, h("h1", null, r.name), h("span", { class: "badge mode" }, words(r.mode)), statusBadge(r.status, { "data-field": "status", "data-value": r.status })),
    h(
      "div",
      { class: "facts" },
      h("span", { "data-field": "step", "data-value": r.step ?? "none" }, stepText(r)),
      h("span", { "data-field": "version", "data-value": r.version }, `version ${r.version}`),
      h("span", null, `changed ${ago(r.updated_ms, now)} (${clock(r.updated_ms)})`),
      h("span", null, `created ${dateTime(r.created_ms)}`),
    ),
    notes,
  );
}

// ---------------------------------------------------------------- the last decision

/** The bounds a check of the spec sets, in the metric's unit. */
function boundsOf(check, metric) {
  if (!check) return "";
  const f = metricFormat(metric);
  const parts = [];
  if (check.max !== undefined && check.max !== null) parts.push(`≤ ${f.text(check.max)}`);
  if (check.min !== undefined && check.min !== null) parts.push(`≥ ${f.text(check.min)}`);
  if (check.max_increase !== undefined && check.max_increase !== null) parts.push(`≤ baseline + ${f.text(check.max_increase)}`);
  if (check.max_ratio !== undefined && check.max_ratio !== null) parts.push(`≤ ${num(check.max_ratio, 3)} × baseline`);
  if (metric === "judge") parts.push(`passes at ${num(check.pass_threshold ?? 90)}, fails below ${num(check.marginal_threshold ?? 75)}`);
  if (check.dry_run) parts.push("dry run");
  return parts.join(", ");
}

function specCheck(spec, name) {
  return spec ? spec.checks.find((c) => (c.name || c.metric) === name) : undefined;
}

/** A run's checks: each figure against its bound, with the outcome and why. */
function runChecks(run, spec) {
  return table(
    ["check", "candidate", numeric("value"), numeric("baseline"), "bound", "outcome", "why"],
    run.checks.map((c) => {
      const f = metricFormat(c.metric);
      return h(
        "tr",
        { "data-check": c.name, "data-outcome": c.outcome },
        h("th", { scope: "row" }, c.name, c.metric !== c.name ? h("div", { class: "muted small" }, words(c.metric)) : null),
        h("td", null, c.candidate),
        h("td", { class: "num" }, f.text(c.value), c.p_value !== undefined ? h("div", { class: "muted small" }, `p ${num(c.p_value, 4)}`) : null),
        h("td", { class: "num" }, f.text(c.baseline)),
        h("td", null, boundsOf(specCheck(spec, c.name), c.metric)),
        h("td", null, h("span", { class: `badge outcome-${c.outcome}` }, c.outcome), c.dry_run ? h("div", { class: "muted small" }, "dry run") : null),
        h("td", { class: "why" }, c.reason, c.query ? h("code", { class: "query" }, c.query) : null),
      );
    }),
    { class: "figures checks" },
  );
}

function runSummary(run) {
  const requests = Object.entries(run.requests).map(([v, n]) => `${v} ${count(n)}`).join(", ");
  return h(
    "p",
    { class: "run-summary" },
    h("span", { class: `badge outcome-${run.outcome}` }, run.outcome),
    ` run of ${clock(run.start_ms)}–${clock(run.end_ms)}`,
    run.step !== null && run.step !== undefined ? `, step ${run.step + 1}` : "",
    requests ? `; requests: ${requests}` : "",
    `. ${run.reason}`,
  );
}

const PERCENT_KEYS = new Set(["share", "limit", "agreement.rate", "agreement.ci_low", "agreement.ci_high", "error_rate.rate", "timeout_rate.rate"]);

/** What an automated change rests on, from its details. */
function evidence(details, spec) {
  const parts = [];
  for (const [key, value] of Object.entries(details || {})) {
    if (PLAIN_DETAILS.has(key) || value === null || value === undefined) continue;
    if (key === "analysis" && value.checks) {
      parts.push(h("h4", null, "The deciding analysis run"), runSummary(value), runChecks(value, spec));
    } else if (key === "guardrail") {
      const g = value;
      parts.push(
        h("h4", null, "The guardrail trip"),
        h("p", null, `${g.variant}: ${words(g.reason)} ${share(g.share)} (${count(g.offending)} of ${count(g.requests)} requests in ${ms(g.window_ms, 0)}) against the limit ${g.reason === "p99_latency" ? ms(g.limit) : share(g.limit)}, judged by ${g.proxy}${g.worker ? ` worker ${g.worker}` : ""} at ${clock(g.at_ms)}.`),
      );
    } else if (key === "shadow") {
      parts.push(h("h4", null, "The shadow report"), h("p", null, `${value.variant}: ${value.verdict}; agreement ${share(value.agreement?.rate)} on ${count(value.compared)} comparisons, error rate ${share(value.error_rate?.rate)}, timeout rate ${share(value.timeout_rate?.rate)} of ${count(value.ended)} ended copies.`), value.reasons?.length ? h("ul", null, value.reasons.map((x) => h("li", null, x))) : null);
    } else if (key === "gate") {
      parts.push(h("h4", null, "The gate's answer"), h("p", null, `${words(value.gate)} (${value.url}) answered ${value.status ?? "nothing"} at ${clock(value.at_ms)}: ${value.message}`));
    } else if (key === "experiment") {
      parts.push(h("h4", null, "The deciding look"), h("p", null, `Verdict ${words(value.verdict)} on the data of ${clock(value.start_ms)}–${clock(value.end_ms)} (${count(value.judged)} looks judged): ${value.reason}`));
    } else {
      parts.push(h("h4", null, words(key)), keyValues(typeof value === "object" ? value : { [key]: value }, Object.fromEntries([...PERCENT_KEYS].map((k) => [k, (v) => share(v)]))));
    }
  }
  return parts;
}

function decisionPanel(events, spec, now) {
  const decision = [...events].reverse().find((e) => AUTOMATED.has(e.actor));
  if (!decision) return panel("decision", "Last automated decision", null, muted("None yet: every change so far was made by a person."));
  const body = evidence(decision.details, spec);
  return panel(
    "decision",
    "Last automated decision",
    null,
    h(
      "div",
      { class: "decision", "data-event-version": decision.version },
      h("p", { class: "decision-head" }, h("span", { class: "badge kind" }, words(decision.kind)), ` by ${decision.actor}`, decision.details?.replica ? ` (replica ${decision.details.replica})` : "", ` at ${clock(decision.at_ms)}, ${ago(decision.at_ms, now)}`),
      h("p", { class: "reason", "data-field": "decision-reason" }, decision.reason),
      body.length ? body : muted("No further evidence recorded with this change."),
    ),
  );
}

// ---------------------------------------------------------------- weights

function weightsPanel(r, events, now) {
  const weights = currentWeights(r);
  const from = events.length ? events[0].at_ms : r.created_ms;
  const series = r.variants.map((v) => ({
    name: v.name,
    color: variantColour(r.variants, v.name),
    step: true,
    points: [...events.map((e) => [e.at_ms, Number(e.details?.weights?.[v.name] ?? 0)]), [now, Number(weights[v.name] ?? 0)]],
  }));
  const rows = r.variants.map((v) =>
    h(
      "div",
      { class: "weight-row", "data-weight-of": v.name, "data-value": v.weight },
      h("span", { class: "weight-name" }, h("span", null, swatch(variantColour(r.variants, v.name)), " ", v.name), v.model ? h("span", { class: "muted small" }, v.model) : null),
      s("svg", { class: "weight-meter", viewBox: "0 0 100 8", preserveAspectRatio: "none" }, s("rect", { class: "track", x: 0, y: 0, width: 100, height: 8 }), s("rect", { x: 0, y: 0, width: v.weight, height: 8, fill: variantColour(r.variants, v.name) })),
      h("span", { class: "num" }, weight(v.weight)),
    ),
  );
  return panel(
    "weights",
    "Weights",
    `Now, and after every change since ${clock(from)} (the events' details.weights).`,
    h("div", { class: "weights-now" }, rows),
    timeChart({ title: "Weights over time", unit: "%", name: "weights", series, from, to: now, yMin: 0, yMax: 100, format: (v) => `${num(v, 0)}`, height: 160 }),
  );
}

// ---------------------------------------------------------------- traffic

function responsesOf(w) {
  return Object.values(w.responses || {}).reduce((a, b) => a + b, 0);
}

function fiveXxShare(w) {
  const total = responsesOf(w);
  return total ? (w.responses["5xx"] || 0) / total : null;
}

function trafficPanel(r, t, fromMs, now) {
  const windowS = t.window_ms / 1000;
  const byVariant = new Map(r.variants.map((v) => [v.name, new Map()]));
  let first = Infinity;
  let last = -Infinity;
  for (const w of t.windows) {
    if (!byVariant.has(w.variant)) byVariant.set(w.variant, new Map());
    byVariant.get(w.variant).set(w.window_start_ms, w);
    first = Math.min(first, w.window_start_ms);
    last = Math.max(last, w.window_start_ms);
  }
  const starts = [];
  if (Number.isFinite(first)) for (let at = first; at <= last; at += t.window_ms) starts.push(at);
  const names = [...byVariant.keys()];
  const variants = r.variants.concat(names.filter((n) => !r.variants.some((v) => v.name === n)).map((n) => ({ name: n })));
  const seriesOf = (value) =>
    names.map((name) => ({
      name,
      color: variantColour(variants, name),
      points: starts.map((at) => {
        const w = byVariant.get(name).get(at);
        return [at + t.window_ms, value(w)];
      }),
    }));
  const chartFrom = Number.isFinite(first) ? first : fromMs;
  const chartTo = Math.max(now, Number.isFinite(last) ? last + t.window_ms : now);
  const common = { from: chartFrom, to: chartTo, incompleteFrom: t.complete_through_ms, height: 160, width: 400 };
  const live = t.workers.filter((w) => w.live).length;
  const totals = t.variants.map((v) =>
    h(
      "tr",
      { "data-variant": v.variant },
      h("th", { scope: "row" }, swatch(variantColour(variants, v.variant)), v.variant),
      h("td", { class: "num", "data-field": "requests", "data-value": v.requests }, count(v.requests)),
      h("td", { class: "num", "data-field": "5xx", "data-value": v.responses["5xx"] || 0 }, count(v.responses["5xx"] || 0)),
      h("td", { class: "num" }, share(fiveXxShare(v))),
      h("td", { class: "num" }, count(v.grpc_errors)),
      h("td", { class: "num" }, ms(v.p50_ms, 2)),
      h("td", { class: "num" }, ms(v.p99_ms, 2)),
    ),
  );
  return panel(
    "traffic",
    "Traffic by variant",
    `What the filters counted in ${windowS} s windows since ${clock(fromMs)} (the last ${span(TELEMETRY_SPAN_MS)}). Complete through ${clock(t.complete_through_ms)}; ${live} of ${t.workers.length} filter workers live; the shaded part may still grow.`,
    h(
      "div",
      { class: "charts three", "data-telemetry-from-ms": fromMs },
      timeChart({ ...common, title: "Request rate", unit: "req/s", name: "rate", minSpan: 1, format: (v) => num(v, 1), series: seriesOf((w) => (w ? w.requests / windowS : 0)) }),
      timeChart({ ...common, title: "5xx share", unit: "% of responses", name: "5xx", minSpan: 0.01, format: (v) => num(v * 100, 1), series: seriesOf((w) => (w ? fiveXxShare(w) : null)) }),
      timeChart({ ...common, title: "p99 latency", unit: "ms", name: "p99", minSpan: 1, format: (v) => num(v, 1), series: seriesOf((w) => (w ? w.p99_ms : null)) }),
    ),
    table(["variant", numeric("requests"), numeric("5xx"), numeric("5xx share"), numeric("gRPC errors"), numeric("p50"), numeric("p99")], totals, { class: "figures traffic-totals", "data-telemetry-from-ms": fromMs }),
    h("p", { class: "muted small" }, `Average rate over the span: ${t.variants.map((v) => `${v.variant} ${perSecond(v.requests / Math.max(1, (chartTo - chartFrom) / 1000))}`).join(", ")}; ${count(t.samples)} sampled requests stored.`),
  );
}

// ---------------------------------------------------------------- analysis

function analysisPanel(r, a) {
  const spec = a.analysis;
  if (!spec) {
    if (r.mode === "ab") return null;
    const why = r.steps.length ? "its steps move on their hold times alone." : "its weights change only when someone changes them.";
    return panel("analysis", "Analysis runs", null, muted(`This rollout has no analysis: ${why}`));
  }
  const runs = a.runs;
  const lastRun = runs[runs.length - 1];
  const describe = (run) => `${clock(run.start_ms)}–${clock(run.end_ms)}: ${run.outcome}. ${run.reason}`;
  const specLine = `A run every ${spec.interval_seconds} s on complete telemetry; at least ${count(spec.min_requests ?? 50)} requests on each side; ${count(spec.failure_limit ?? 2)} failed runs in a row roll back, ${count(spec.inconclusive_limit ?? 3)} inconclusive runs in a row pause; ${count(spec.passes_per_step ?? 1)} passed run${(spec.passes_per_step ?? 1) === 1 ? "" : "s"} per step.`;
  const tally = Object.fromEntries(["passed", "failed", "inconclusive"].map((o) => [o, runs.filter((x) => x.outcome === o).length]));

  // One chart per check and candidate: its value in each run against its bounds.
  const groups = new Map();
  for (const run of runs) {
    for (const c of run.checks) {
      const key = `${c.name}\u0000${c.candidate}`;
      if (!groups.has(key)) groups.set(key, { check: c, points: [], baseline: [] });
      const g = groups.get(key);
      g.points.push([run.end_ms, c.value, OUTCOME_COLOURS[c.outcome], `${clock(run.end_ms)}: ${c.outcome}. ${c.reason}`]);
      g.baseline.push([run.end_ms, c.baseline]);
    }
  }
  // Half an interval of room on each side, so the first and last dots show whole.
  const pad = spec.interval_seconds * 500;
  const from = runs.length ? runs[0].end_ms - pad : 0;
  const to = runs.length ? lastRun.end_ms + pad : 1;
  const charts = [...groups.values()].map(({ check, points, baseline }) => {
    const f = metricFormat(check.metric);
    const bound = specCheck(spec, check.name) || {};
    const bounds = [];
    if (Number.isFinite(bound.max)) bounds.push({ value: bound.max, label: "max" });
    if (Number.isFinite(bound.min)) bounds.push({ value: bound.min, label: "min" });
    if (check.metric === "judge") {
      bounds.push({ value: bound.pass_threshold ?? 90, label: "pass" }, { value: bound.marginal_threshold ?? 75, label: "fail below" });
    }
    const series = [{ name: `${check.candidate} (by run outcome)`, color: "#374151", points, marks: true }];
    if (baseline.some((p) => Number.isFinite(p[1]))) series.push({ name: "baseline", color: "#9ca3af", dashed: true, points: baseline });
    return timeChart({
      title: `${check.name}${check.dry_run ? " (dry run)" : ""}`,
      unit: f.unit,
      name: `check-${check.name}-${check.candidate}`,
      series,
      bounds,
      from,
      to,
      yMin: check.metric === "judge" ? 0 : undefined,
      yMax: check.metric === "judge" ? 100 : undefined,
      minSpan: f.scale === 100 ? 0.01 : 1e-3,
      format: (v) => (f.scale === 100 ? num(v * 100, 2) : num(v, 3)),
      height: 150,
    });
  });

  return panel(
    "analysis",
    "Analysis runs",
    specLine,
    h(
      "p",
      { class: "run-tally" },
      h("strong", { "data-field": "analysis-runs", "data-value": runs.length }, `${runs.length} run${runs.length === 1 ? "" : "s"}`),
      runs.length === 50 ? " (the newest 50)" : "",
      `: ${tally.passed} passed, ${tally.failed} failed, ${tally.inconclusive} inconclusive. `,
      lastRun ? h("span", null, "Last run: ", h("span", { class: `badge outcome-${lastRun.outcome}`, "data-field": "last-run-outcome", "data-value": lastRun.outcome }, lastRun.outcome)) : h("span", { "data-field": "last-run-outcome", "data-value": "none" }, "no run yet"),
    ),
    runs.length ? outcomeStrip(runs, describe) : muted("The first run is taken once an interval of telemetry is complete."),
    charts.length ? h("div", { class: "charts two" }, charts) : null,
    lastRun ? [h("h3", null, "The last run"), runSummary(lastRun), runChecks(lastRun, spec)] : null,
  );
}

// ---------------------------------------------------------------- shadows

function shadowPanel(report) {
  const shadows = report.shadows;
  if (!shadows.length) return panel("shadow", "Shadow comparisons", null, muted("No shadow copies reported for this rollout."));
  const gate = report.gate;
  return panel(
    "shadow",
    "Shadow comparisons",
    `Judged against the shadow gate: agreement at least ${share(gate.min_agreement)} over ${count(gate.min_comparisons)} comparisons; error and timeout rates at most ${share(gate.max_error_rate)} and ${share(gate.max_timeout_rate)} over ${count(gate.min_copies)} copies.`,
    shadows.map((sh) =>
      h(
        "div",
        { class: "shadow", "data-shadow": sh.variant },
        h("h3", null, sh.variant, " ", h("span", { class: `badge verdict-${sh.verdict}`, "data-field": "shadow-verdict", "data-value": sh.verdict }, words(sh.verdict))),
        shareMeter({ label: `agreement (%)`, rate: sh.agreement.rate, low: sh.agreement.ci_low, high: sh.agreement.ci_high, threshold: gate.min_agreement, kind: "min", format: (v) => num(v * 100, 1) }),
        shareMeter({ label: `error rate (%)`, rate: sh.error_rate.rate, low: sh.error_rate.ci_low, high: sh.error_rate.ci_high, threshold: gate.max_error_rate, kind: "max", format: (v) => num(v * 100, 1) }),
        shareMeter({ label: `timeout rate (%)`, rate: sh.timeout_rate.rate, low: sh.timeout_rate.ci_low, high: sh.timeout_rate.ci_high, threshold: gate.max_timeout_rate, kind: "max", format: (v) => num(v * 100, 1) }),
        table(
          [numeric("copies mirrored"), numeric("ended"), numeric("compared"), numeric("agreement (95% interval)"), numeric("|score diff| p50 / p90 / p99"), numeric("p99 latency shadow / primary")],
          [
            h(
              "tr",
              null,
              h("td", { class: "num" }, count(sh.mirrored)),
              h("td", { class: "num" }, count(sh.ended)),
              h("td", { class: "num", "data-field": "compared", "data-value": sh.compared }, count(sh.compared)),
              h("td", { class: "num" }, `${share(sh.agreement.rate)} [${share(sh.agreement.ci_low)}, ${share(sh.agreement.ci_high)}]`),
              h("td", { class: "num" }, `≤ ${num(sh.score_diff.p50, 4)} / ${num(sh.score_diff.p90, 4)} / ${num(sh.score_diff.p99, 4)}`),
              h("td", { class: "num" }, `${ms(sh.latency_ms.shadow_p99)} / ${ms(sh.latency_ms.primary_p99)}`),
            ),
          ],
          { class: "figures" },
        ),
        sh.reasons.length ? h("ul", { class: "reasons" }, sh.reasons.map((x) => h("li", null, x))) : null,
      ),
    ),
  );
}

// ---------------------------------------------------------------- A/B experiment

function experimentPanel(r, answer) {
  if (!answer.ok) return panel("experiment", "A/B experiment", null, muted(`Not available: ${errorMessage(answer)}`));
  const e = answer.data;
  if (!e.experiment) return panel("experiment", "A/B experiment", null, muted("This A/B rollout runs no experiment: its shares stay as set."));
  const spec = e.experiment;
  const runs = e.runs;
  const look = runs[runs.length - 1];
  const metrics = spec.metrics.map((m) => `${m.name} (${words(m.kind)}, ${m.direction}, ${m.role})`).join(", ");
  const note = `Unit: ${spec.unit ?? "request"}; ${metrics}; alpha ${num(spec.alpha ?? 0.05, 3)}${spec.sequential === false ? " (fixed horizon)" : " (sequential)"}; a look every ${spec.interval_seconds} s, at most ${count(spec.max_intervals)} judged.`;
  if (!look) return panel("experiment", "A/B experiment", note, muted("No look yet: the first comes one interval after the start."));
  const rateOf = (m, v) => {
    const value = v.metrics[m.name];
    return m.kind === "conversion" ? share(value) : num(value, 4);
  };
  const rows = look.comparisons.map((c) => ({
    label: `${c.metric}: ${c.variant} vs ${c.control}`,
    low: c.lift_low ?? c.ci_low,
    mid: c.lift ?? c.difference,
    high: c.lift_high ?? c.ci_high,
    effect: c.effect,
  }));
  return panel(
    "experiment",
    "A/B experiment",
    note,
    h(
      "p",
      { class: "run-summary" },
      h("span", { class: "badge", "data-field": "experiment-verdict", "data-value": look.verdict }, words(look.verdict)),
      ` look ${runs.length} at ${clock(look.computed_ms)} over ${clock(look.start_ms)}–${clock(look.end_ms)}, ${count(look.judged)} judged. ${look.reason}`,
    ),
    h("p", { class: look.srm.mismatch ? "note held" : "muted small" }, `Sample ratio: chi-square ${num(look.srm.statistic, 2)} on ${look.srm.counted}, p ${num(look.srm.p_value, 4)}${look.srm.mismatch ? ` below ${look.srm.alpha}: the split is not as designed` : ` (pauses below ${look.srm.alpha})`}.`),
    table(
      ["variant", numeric("weight"), numeric("expected share"), numeric("exposures"), numeric(look.srm.counted), ...spec.metrics.map((m) => numeric(`${m.name} (${m.kind === "conversion" ? "%" : "mean"})`))],
      look.variants.map((v) =>
        h(
          "tr",
          { "data-variant": v.variant },
          h("th", { scope: "row" }, v.variant),
          h("td", { class: "num" }, weight(e.variants.find((x) => x.name === v.variant)?.weight)),
          h("td", { class: "num" }, share(v.expected_share, 1)),
          h("td", { class: "num" }, count(v.exposures)),
          h("td", { class: "num" }, count(v.srm_count)),
          spec.metrics.map((m) => h("td", { class: "num" }, rateOf(m, v))),
        ),
      ),
      { class: "figures" },
    ),
    rows.length
      ? forestPlot({ title: "Lift of each treatment over the control, with its interval", unit: "% of the control's figure", name: "lift", rows, format: (v) => num(v * 100, 1) })
      : null,
    rows.length
      ? table(
          ["metric", "variant", numeric("control"), numeric("treatment"), numeric("lift"), numeric("interval"), numeric("p"), numeric("p (Holm)"), "effect"],
          look.comparisons.map((c) =>
            h(
              "tr",
              null,
              h("th", { scope: "row" }, `${c.metric} (${c.role})`),
              h("td", null, c.variant),
              h("td", { class: "num" }, c.kind === "conversion" ? share(c.control_value) : num(c.control_value, 4)),
              h("td", { class: "num" }, c.kind === "conversion" ? share(c.variant_value) : num(c.variant_value, 4)),
              h("td", { class: "num" }, signedShare(c.lift)),
              h("td", { class: "num" }, `[${signedShare(c.lift_low)}, ${signedShare(c.lift_high)}]`),
              h("td", { class: "num" }, num(c.p_value, 4)),
              h("td", { class: "num" }, num(c.p_value_adjusted, 4)),
              h("td", null, words(c.effect)),
            ),
          ),
          { class: "figures" },
        )
      : null,
    disclosure(
      `looks-${r.name}`,
      `Every look (${runs.length})`,
      table(
        ["data", "judged", "verdict", "SRM p", "exposures"],
        [...runs].reverse().map((run) =>
          h("tr", null, h("td", null, `${clock(run.start_ms)}–${clock(run.end_ms)}`), h("td", { class: "num" }, count(run.judged)), h("td", null, words(run.verdict)), h("td", { class: "num" }, num(run.srm.p_value, 4)), h("td", null, run.variants.map((v) => `${v.variant} ${count(v.exposures)}`).join(", "))),
        ),
        { class: "figures" },
      ),
    ),
  );
}

// ---------------------------------------------------------------- models

function jobsPanel(model, answer, now) {
  if (!answer.ok) return panel("jobs", `Retraining jobs: ${model}`, null, muted(`Not available: ${errorMessage(answer)}`));
  const jobs = [...answer.data.jobs].reverse();
  return panel(
    "jobs",
    `Retraining jobs: ${model}`,
    `The newest ten, newest first (GET ${paths.jobs(model)}).`,
    jobs.length
      ? table(
          ["job", "status", "trigger", "created", numeric("took"), numeric("version"), numeric("PR AUC challenger / champion"), "outcome"],
          jobs.map((j) =>
            h(
              "tr",
              { "data-job": j.id, "data-status": j.status },
              h("th", { scope: "row" }, `#${j.id}`),
              h("td", null, h("span", { class: `badge job-${j.status}` }, j.status)),
              h("td", null, j.trigger, h("div", { class: "muted small" }, j.reason)),
              h("td", null, `${clock(j.created_ms)} (${ago(j.created_ms, now)})`),
              h("td", { class: "num" }, j.started_ms && j.ended_ms ? span(j.ended_ms - j.started_ms) : j.started_ms ? `running ${span(now - j.started_ms)}` : "–"),
              h("td", { class: "num" }, j.version ? `v${j.version}` : "–"),
              h("td", { class: "num" }, j.comparison ? `${num(j.comparison.challenger?.pr_auc, 4)} / ${num(j.comparison.champion?.pr_auc, 4)}` : "–"),
              h("td", { class: "why" }, j.outcome),
            ),
          ),
          { class: "figures" },
        )
      : muted("No retraining job yet."),
  );
}

function modelPanels({ model, jobs, drift, performance }, now) {
  return [jobsPanel(model, jobs, now), driftPanel(model, drift, errorMessage, paths.drift(model)), performancePanel(model, performance, errorMessage, paths.performance(model))];
}

// ---------------------------------------------------------------- timeline

function timelinePanel(r, events, spec) {
  const rows = [...events].reverse().map((e) => {
    const ev = evidence(e.details, spec);
    const weights = e.details?.weights || {};
    return h(
      "tr",
      { "data-event-version": e.version, "data-kind": e.kind, "data-actor": e.actor },
      h("td", { class: "when" }, clock(e.at_ms), h("div", { class: "muted small" }, `v${e.version}`)),
      h("td", null, h("span", { class: "badge kind" }, words(e.kind))),
      h("td", null, h("span", { class: `actor ${AUTOMATED.has(e.actor) ? "automated" : "person"}` }, e.actor)),
      h("td", { class: "why" }, h("div", { "data-field": "reason" }, e.reason), ev.length ? disclosure(`event-${r.name}-${e.version}-${e.at_ms}`, "evidence", ...ev) : null),
      h("td", { class: "weights-cell" }, weightsText(r.variants, weights)),
    );
  });
  return panel("timeline", "Timeline", `Every change, newest first (GET /v1/rollouts/${r.name}/events); automated actors are marked.`, table(["at", "change", "by", "why", "weights after"], rows, { class: "figures timeline" }));
}

// ---------------------------------------------------------------- the loop

let lastGood = null;

function healthy() {
  lastGood = scorerNow();
  banner.hidden = true;
  document.body.dataset.state = "live";
  document.body.dataset.updatedMs = String(lastGood);
  fill(freshness, `live · updated ${clock(lastGood)}`);
}

function trouble(error) {
  document.body.dataset.state = "stale";
  banner.hidden = false;
  fill(banner, `The scorer did not answer (${error.message}). ${lastGood ? `The figures below are from ${clock(lastGood)}; ` : ""}retrying every ${POLL_MS / 1000} s.`);
  fill(freshness, lastGood ? `stale since ${clock(lastGood)}` : "no answer yet");
}

async function refresh() {
  // A tab nobody looks at asks nothing; it catches up within a poll of being shown.
  if (document.hidden) {
    setTimeout(refresh, POLL_MS);
    return;
  }
  const r = route();
  try {
    if (r.page === "rollout") await showRollout(r.name);
    else await showList();
    healthy();
  } catch (error) {
    trouble(error);
  }
  setTimeout(refresh, POLL_MS);
}

refresh();
