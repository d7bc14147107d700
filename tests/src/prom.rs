//! Reading Prometheus text: Envoy's `/stats/prometheus` and the scorer's OpenMetrics
//! `/metrics`.
//!
//! A sample line is `name{label="value",...} value [timestamp]`. Label values are
//! quoted strings that may hold any character, braces, commas and `=` included, with
//! `\\`, `\"` and `\n` escaped; they are read as such, not split on punctuation.
//! Families typed `histogram` gather their `_bucket` lines into one series per label
//! set (without `le`); their `_sum` and `_count`, like every other line, are scalar
//! series of their own name. The quantiles of a `summary` are not kept. Comments,
//! blank lines and lines that are not samples are skipped.

use std::collections::{BTreeMap, HashMap};

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    /// Cumulative buckets as (upper bound, count), in the order they came.
    Histogram(Vec<(f64, f64)>),
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    metric: String,
    labels: Labels,
    value: Value,
}

pub struct Metrics {
    samples: Vec<Sample>,
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Scalar(v) => Some(*v),
        Value::Histogram(_) => None,
    }
}

/// A float as Prometheus writes it (`NaN`, `+Inf`, `-Inf` included).
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// A sample line as (metric name, labels, value); `None` when it is not one.
fn sample_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, &mut labels)?;
    }
    // The value, then an optional timestamp (and, in OpenMetrics, an exemplar).
    let value = number(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// Reads `label="value", ...}` into `labels`; the text after the closing brace.
fn label_set<'a>(mut text: &'a str, labels: &mut Labels) -> Option<&'a str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some(rest);
        }
        let (name, rest) = text.split_once('=')?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let (value, rest) = quoted(rest.trim_start())?;
        labels.insert(name.to_owned(), value);
        text = rest.trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}

/// Reads a `"..."` string with its escapes; the string and the text after it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut types: HashMap<&str, &str> = HashMap::new();
        let mut samples: Vec<Sample> = Vec::new();
        // Where each histogram series is in `samples`, by family and labels.
        let mut histograms: HashMap<(String, Labels), usize> = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if let (Some("TYPE"), Some(family), Some(kind)) =
                    (words.next(), words.next(), words.next())
                {
                    types.insert(family, kind);
                }
                continue;
            }
            let Some((name, mut labels, value)) = sample_line(line) else {
                continue;
            };
            let bucket_of = name
                .strip_suffix("_bucket")
                .filter(|family| types.get(family) == Some(&"histogram"));
            if let Some(family) = bucket_of {
                let Some(le) = labels.remove("le").as_deref().and_then(number) else {
                    continue;
                };
                let at = *histograms
                    .entry((family.to_owned(), labels.clone()))
                    .or_insert_with(|| {
                        samples.push(Sample {
                            metric: family.to_owned(),
                            labels,
                            value: Value::Histogram(Vec::new()),
                        });
                        samples.len() - 1
                    });
                if let Value::Histogram(buckets) = &mut samples[at].value {
                    buckets.push((le, value));
                }
                continue;
            }
            if types.get(name) == Some(&"summary") && labels.contains_key("quantile") {
                continue;
            }
            samples.push(Sample {
                metric: name.to_owned(),
                labels,
                value: Value::Scalar(value),
            });
        }
        Self { samples }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one counter or gauge series of `name` that has `labels`
    /// (other labels may be present). `None` when there is no such series.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels).filter_map(|s| scalar(&s.value));
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "{name}{labels:?} matches more than one series"
        );
        Some(first)
    }

    /// The sum over every series of `name` that has `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .filter_map(|s| scalar(&s.value))
            .sum()
    }

    /// The cumulative buckets of a histogram series, as (upper bound, count).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<(f64, f64)>> {
        self.matching(name, labels).find_map(|s| match &s.value {
            Value::Histogram(buckets) => Some(buckets.clone()),
            Value::Scalar(_) => None,
        })
    }

    /// Observations in a histogram series (its `+Inf` bucket).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?
            .into_iter()
            .find(|(le, _)| le.is_infinite())
            .map(|(_, count)| count)
    }

    /// Every series of `name`, as its labels (sorted by name) and value.
    pub fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.matching(name, &[])
            .filter_map(|s| {
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some((labels, scalar(&s.value)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_may_hold_braces_commas_and_escaped_quotes() {
        let text = r#"# HELP outrider_scorer_http_requests Requests served.
# TYPE outrider_scorer_http_requests counter
outrider_scorer_http_requests_total{route="/v1/stats/{analysis}",method="POST",status="200"} 3
outrider_scorer_http_requests_total{route="/v1/rollouts/{name}/weights",method="PUT",status="400"} 2 1700000000000
outrider_scorer_http_requests_total{route="unmatched",method="GET",status="404"} 1
odd{a="x,y=z", b = "say \"hi\"\n", c="back\\slash}",} 4.5
bare 7
# EOF
"#;
        let m = Metrics::parse(text);
        let requests = "outrider_scorer_http_requests_total";
        assert_eq!(
            m.value(requests, &[("route", "/v1/stats/{analysis}")]),
            Some(3.0)
        );
        assert_eq!(
            m.value(
                requests,
                &[("route", "/v1/rollouts/{name}/weights"), ("status", "400")]
            ),
            Some(2.0)
        );
        assert_eq!(m.sum(requests, &[]), 6.0);
        assert_eq!(m.series(requests).len(), 3);
        assert_eq!(
            m.series("odd"),
            [(
                vec![
                    ("a".to_owned(), "x,y=z".to_owned()),
                    ("b".to_owned(), "say \"hi\"\n".to_owned()),
                    ("c".to_owned(), "back\\slash}".to_owned()),
                ],
                4.5
            )]
        );
        assert_eq!(m.value("bare", &[]), Some(7.0));
        assert_eq!(m.value("absent", &[]), None);
    }

    #[test]
    fn histograms_gather_their_buckets_by_label_set() {
        let text = r#"# TYPE envoy_latency histogram
envoy_latency_bucket{route="/a/{b}",le="0.5"} 1
envoy_latency_bucket{route="/a/{b}",le="1"} 3
envoy_latency_bucket{route="/a/{b}",le="+Inf"} 4
envoy_latency_bucket{route="/c",le="+Inf"} 9
envoy_latency_sum{route="/a/{b}"} 2.5
envoy_latency_count{route="/a/{b}"} 4
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.1
rpc_seconds_count 10
"#;
        let m = Metrics::parse(text);
        assert_eq!(
            m.histogram("envoy_latency", &[("route", "/a/{b}")]),
            Some(vec![(0.5, 1.0), (1.0, 3.0), (f64::INFINITY, 4.0)])
        );
        assert_eq!(
            m.histogram_count("envoy_latency", &[("route", "/c")]),
            Some(9.0)
        );
        assert_eq!(m.value("envoy_latency", &[("route", "/c")]), None);
        assert_eq!(
            m.value("envoy_latency_count", &[("route", "/a/{b}")]),
            Some(4.0)
        );
        assert_eq!(m.value("envoy_latency_sum", &[]), Some(2.5));
        assert_eq!(m.sum("rpc_seconds", &[]), 0.0);
        assert_eq!(m.value("rpc_seconds_count", &[]), Some(10.0));
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        let text = "up 1\nbroken{a=\"x} 2\nnovalue\nalso_broken{a=x} 3\nnan NaN\nwrong abc\n";
        let m = Metrics::parse(text);
        assert_eq!(m.value("up", &[]), Some(1.0));
        assert_eq!(m.value("broken", &[]), None);
        assert_eq!(m.value("novalue", &[]), None);
        assert_eq!(m.value("also_broken", &[]), None);
        assert!(m.value("nan", &[]).unwrap().is_nan());
        assert_eq!(m.value("wrong", &[]), None);
    }
}
