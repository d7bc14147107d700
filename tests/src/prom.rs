//! Reading Envoy's `/stats/prometheus` output.

use prometheus_parse::{Sample, Scrape, Value};

pub struct Metrics {
    samples: Vec<Sample>,
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let samples = Scrape::parse(lines).map(|s| s.samples).unwrap_or_default();
        Self { samples }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
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
            Value::Histogram(buckets) => {
                Some(buckets.iter().map(|b| (b.less_than, b.count)).collect())
            }
            _ => None,
        })
    }

    /// Observations in a histogram series (its `+Inf` bucket).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.histogram(name, labels)?
            .into_iter()
            .find(|(le, _)| le.is_infinite())
            .map(|(_, count)| count)
    }

    /// Every series of `name`, as its labels and value.
    pub fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.matching(name, &[])
            .filter_map(|s| {
                let mut labels: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                Some((labels, scalar(&s.value)?))
            })
            .collect()
    }
}
