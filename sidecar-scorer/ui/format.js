// Numbers as people read them, always with their unit.

const isNumber = (x) => typeof x === "number" && Number.isFinite(x);

/** A plain number with up to `digits` decimals, or "–" without a value. */
export function num(x, digits = 2) {
  if (!isNumber(x)) return "–";
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return x.toLocaleString("en-US");
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** An integer count. */
export function count(x) {
  return isNumber(x) ? Math.round(x).toLocaleString("en-US") : "–";
}

/** A share in [0, 1] as a percentage. */
export function share(x, digits = 2) {
  if (!isNumber(x)) return "–";
  return `${(x * 100).toFixed(digits)} %`;
}

/** A signed share (a lift, a difference of rates) as a percentage. */
export function signedShare(x, digits = 1) {
  if (!isNumber(x)) return "–";
  const text = `${(x * 100).toFixed(digits)} %`;
  return x > 0 ? `+${text}` : text;
}

/** A weight, which the API gives in percent already. */
export function weight(x) {
  if (!isNumber(x)) return "–";
  return `${Number.isInteger(x) ? x : x.toFixed(2)} %`;
}

export function ms(x, digits = 1) {
  return isNumber(x) ? `${num(x, digits)} ms` : "–";
}

export function perSecond(x) {
  return isNumber(x) ? `${num(x, 1)} req/s` : "–";
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A time of day (the browser's time zone). */
export function clock(at) {
  if (!isNumber(at)) return "–";
  const d = new Date(at);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A date and time (the browser's time zone). */
export function dateTime(at) {
  if (!isNumber(at)) return "–";
  const d = new Date(at);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(at)}`;
}

/** A span of time: "45 s", "12 min", "3.5 h", "2 d". */
export function span(millis) {
  if (!isNumber(millis)) return "–";
  const secs = Math.abs(millis) / 1000;
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 90 * 60) return `${Math.round(secs / 60)} min`;
  if (secs < 36 * 3600) return `${(secs / 3600).toFixed(1)} h`;
  return `${(secs / 86400).toFixed(1)} d`;
}

/** How long ago `at` was, by the scorer's clock `now`. */
export function ago(at, now) {
  if (!isNumber(at)) return "–";
  return at > now ? `in ${span(at - now)}` : `${span(now - at)} ago`;
}

/** The unit-aware formatter of an analysis metric, and the unit's name. */
export function metricFormat(metric) {
  switch (metric) {
    case "error_rate":
    case "grpc_error_rate":
    case "score_share_above":
      return { unit: "%", scale: 100, text: (x) => share(x) };
    case "latency_p50_ms":
    case "latency_p99_ms":
      return { unit: "ms", scale: 1, text: (x) => ms(x, 2) };
    case "judge":
      return { unit: "score (0–100)", scale: 1, text: (x) => (isNumber(x) ? `${num(x, 1)} / 100` : "–") };
    case "prediction_ks":
    case "prediction_psi":
    case "prediction_js":
      return { unit: "distance", scale: 1, text: (x) => num(x, 4) };
    default:
      return { unit: "query value", scale: 1, text: (x) => num(x, 4) };
  }
}

/** A snake_case word as prose: "rolled_back" → "rolled back". */
export function words(x) {
  return String(x ?? "").replaceAll("_", " ");
}
