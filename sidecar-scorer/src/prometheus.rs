//! The Prometheus provider of canary analysis: a `prometheus` check's PromQL with its
//! placeholders filled in, run as an instant query at the end of the interval, and
//! the one sample its answer must hold.
//!
//! Everything that goes wrong (Prometheus unreachable, a PromQL error, no series,
//! several series, NaN) comes back as the words of an `Err`: the check is then
//! inconclusive, never passed.

use std::time::Duration;

use serde::Deserialize;

/// How long a query may take, on our side and on Prometheus' (its `timeout`
/// parameter), so a slow Prometheus delays the controller by this at most.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The placeholders a query may use.
pub const PLACEHOLDERS: [&str; 3] = ["rollout", "variant", "interval"];

/// What the placeholders stand for in one query.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    pub rollout: &'a str,
    pub variant: &'a str,
    pub interval_seconds: u64,
}

/// `query` with each `{{name}}` replaced; an unknown name or a `{{` left open is an
/// error that says which. Rollout and variant names are letters, digits, `-` and `_`
/// (checked when a rollout is created), so they need no escaping in PromQL strings.
pub fn substitute(query: &str, with: &Bindings) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            format!(
                "`{{{{` at byte {} is never closed by `}}}}`",
                query.len() - rest.len() + open
            )
        })?;
        let name = after[..close].trim();
        let value = match name {
            "rollout" => with.rollout.to_owned(),
            "variant" => with.variant.to_owned(),
            "interval" => format!("{}s", with.interval_seconds),
            _ => {
                let known: Vec<String> = PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{{{p}}}}}"))
                    .collect();
                return Err(format!(
                    "unknown placeholder `{{{{{name}}}}}`; a query may use {}",
                    known.join(", ")
                ));
            }
        };
        out.push_str(&value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The body of an answer of Prometheus' HTTP API.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// A sample value as Prometheus writes it: a string, `NaN` and `+Inf` included.
fn sample_value(pair: &serde_json::Value) -> Result<f64, String> {
    let text = pair
        .get(1)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("a sample without a value: {pair}"))?;
    let value = match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text
            .parse()
            .map_err(|_| format!("a sample value that is not a number: `{text}`"))?,
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!(
            "the query returned {text} (a division by zero, or no data in the range?)"
        ))
    }
}

/// The one value of an instant query's answer (`status` is the HTTP status).
pub fn parse_answer(status: u16, body: &[u8]) -> Result<f64, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("Prometheus answered {status} with a body that is not its API's JSON: {text}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus answered {status}: {}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("no reason given")
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| "Prometheus answered success without data".to_owned())?;
    match data.result_type.as_str() {
        "scalar" => sample_value(&data.result),
        "vector" => {
            let series = data.result.as_array().map(Vec::as_slice).unwrap_or(&[]);
            match series {
                [] => Err("no data: the query returned no series".to_owned()),
                [one] => sample_value(&one["value"]),
                many => Err(format!(
                    "the query returned {} series; it must return exactly one (aggregate with sum() or select one by its labels)",
                    many.len()
                )),
            }
        }
        other => Err(format!(
            "the query returned a {other}; it must return an instant vector of one series or a scalar"
        )),
    }
}

/// `ms` since the epoch as the seconds Prometheus' `time` parameter takes.
pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Sends instant queries.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Result<Self, String> {
        reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .build()
            .map(|http| Self { http })
            .map_err(|e| format!("no HTTP client for Prometheus: {e}"))
    }

    /// `query` evaluated at `at_ms` by the Prometheus at `base` (`/api/v1/query`).
    pub async fn instant(&self, base: &str, query: &str, at_ms: u64) -> Result<f64, String> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let timeout = format!("{}s", QUERY_TIMEOUT.as_secs());
        let time = seconds(at_ms);
        let form =
            serde_urlencoded::to_string([("query", query), ("time", &time), ("timeout", &timeout)])
                .map_err(|e| format!("the query cannot be sent: {e}"))?;
        // POST, as Prometheus' API allows, so a long query never meets a URL limit.
        let reply = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| format!("Prometheus at {base} did not answer: {e}"))?;
        let status = reply.status().as_u16();
        let body = reply
            .bytes()
            .await
            .map_err(|e| format!("Prometheus at {base}: reading the answer: {e}"))?;
        parse_answer(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAUD_CANARY: Bindings = Bindings {
        rollout: "fraud",
        variant: "canary",
        interval_seconds: 30,
    };

    #[test]
    fn placeholders_are_filled_in_and_unknown_ones_refused() {
        let query = r#"sum(increase(outrider_rs_total{rollout="{{rollout}}",variant="{{ variant }}",class="5xx"}[{{interval}}]))"#;
        assert_eq!(
            substitute(query, &FRAUD_CANARY).unwrap(),
            r#"sum(increase(outrider_rs_total{rollout="fraud",variant="canary",class="5xx"}[30s]))"#
        );
        assert_eq!(substitute("up", &FRAUD_CANARY).unwrap(), "up");
        let unknown = substitute("x{job=\"{{job}}\"}", &FRAUD_CANARY).unwrap_err();
        assert!(unknown.contains("`{{job}}`"), "{unknown}");
        assert!(
            unknown.contains("{{rollout}}, {{variant}}, {{interval}}"),
            "{unknown}"
        );
        let open = substitute("x[{{interval]", &FRAUD_CANARY).unwrap_err();
        assert!(open.contains("at byte 2 is never closed"), "{open}");
    }

    #[test]
    fn an_answer_gives_its_one_value_or_says_why_not() {
        let vector = |result: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
        };
        let one = vector(r#"[{"metric":{},"value":[1700000000.5,"0.25"]}]"#);
        assert_eq!(parse_answer(200, one.as_bytes()), Ok(0.25));
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
        assert_eq!(parse_answer(200, scalar.as_bytes()), Ok(3.0));

        let empty = parse_answer(200, vector("[]").as_bytes()).unwrap_err();
        assert!(empty.starts_with("no data"), "{empty}");
        let two = vector(
            r#"[{"metric":{"variant":"a"},"value":[1,"1"]},{"metric":{"variant":"b"},"value":[1,"2"]},{"metric":{},"value":[1,"2"]}]"#,
        );
        let several = parse_answer(200, two.as_bytes()).unwrap_err();
        assert!(several.contains("returned 3 series"), "{several}");
        for text in ["NaN", "+Inf", "-Inf"] {
            let body = vector(&format!(r#"[{{"metric":{{}},"value":[1,"{text}"]}}]"#));
            let why = parse_answer(200, body.as_bytes()).unwrap_err();
            assert!(why.contains(text), "{why}");
        }
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            parse_answer(200, matrix.as_bytes())
                .unwrap_err()
                .contains("matrix")
        );

        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \"}\""}"#;
        let why = parse_answer(400, bad.as_bytes()).unwrap_err();
        assert_eq!(
            why,
            "Prometheus answered 400: bad_data: 1:5: parse error: unexpected \"}\""
        );
        let proxy = parse_answer(502, b"<html>Bad Gateway</html>").unwrap_err();
        assert!(
            proxy.contains("502") && proxy.contains("Bad Gateway"),
            "{proxy}"
        );
    }

    #[test]
    fn the_time_is_in_seconds_with_milliseconds() {
        assert_eq!(seconds(1_700_000_005_000), "1700000005.000");
        assert_eq!(seconds(1_700_000_005_042), "1700000005.042");
    }
}
