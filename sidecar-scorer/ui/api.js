// Reads of the scorer's JSON API (docs/api.md). Reads need no token. The scorer's
// clock, from each answer's Date header, places "now" on charts whose times are the
// scorer's and the filters'.

let offsetMs = 0;

/** Milliseconds since the epoch by the scorer's clock (to a second). */
export function scorerNow() {
  return Date.now() + offsetMs;
}

/**
 * GET `path`: {status, ok, data} where data is the parsed JSON body (the error
 * object for a 4xx). Throws only when the scorer does not answer.
 */
export async function get(path) {
  const response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  const date = Date.parse(response.headers.get("date") || "");
  if (Number.isFinite(date)) offsetMs = date + 500 - Date.now();
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: { code: "invalid_json", message: text.slice(0, 200) } };
    }
  }
  return { status: response.status, ok: response.ok, data };
}

/** The message of an error answer. */
export function errorMessage(answer) {
  const e = answer && answer.data && answer.data.error;
  return e ? e.message : `HTTP ${answer ? answer.status : "?"}`;
}

const path = encodeURIComponent;

export const paths = {
  rollouts: () => "/v1/rollouts",
  rollout: (name) => `/v1/rollouts/${path(name)}`,
  events: (name) => `/v1/rollouts/${path(name)}/events`,
  analysis: (name) => `/v1/rollouts/${path(name)}/analysis`,
  experiment: (name) => `/v1/rollouts/${path(name)}/experiment`,
  telemetry: (name, fromMs) => `/v1/rollouts/${path(name)}/telemetry?from_ms=${fromMs}`,
  shadow: (name) => `/v1/rollouts/${path(name)}/shadow`,
  firingAlerts: () => "/v1/alerts?firing=true",
  jobs: (model) => `/v1/models/${path(model)}/jobs?limit=10`,
  drift: (model) => `/v1/models/${path(model)}/drift`,
  performance: (model) => `/v1/models/${path(model)}/performance`,
};
