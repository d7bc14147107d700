//! The filter's per-variant figures as Envoy's admin API reports them in
//! `/stats?format=json`: counters, and the latency quantiles Envoy computes from its
//! histograms at each stats flush.

use std::collections::BTreeMap;

use serde_json::Value;

/// Figures of one variant.
#[derive(Debug, Default, Clone)]
pub struct VariantFigures {
    pub weight_bp: u64,
    pub requests: u64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 4],
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The same quantiles over the last stats flush interval only.
    pub interval_p50_ms: Option<f64>,
    pub interval_p99_ms: Option<f64>,
    pub overrides_honoured: u64,
}

/// Figures of one rollout.
#[derive(Debug, Default, Clone)]
pub struct RolloutFigures {
    pub variants: BTreeMap<String, VariantFigures>,
    pub overrides_rejected: BTreeMap<String, u64>,
    pub unkeyed: u64,
}

/// `name=value` segments of a stat name after its base name.
fn labels(name: &str) -> BTreeMap<&str, &str> {
    name.split('.')
        .filter_map(|segment| segment.split_once('='))
        .collect()
}

fn base(name: &str) -> &str {
    let trimmed = name.strip_prefix("wasmcustom.").unwrap_or(name);
    trimmed.split(".rollout=").next().unwrap_or(trimmed)
}

impl RolloutFigures {
    /// Reads the figures of `rollout` from a `/stats?format=json` document.
    pub fn from_admin_json(document: &Value, rollout: &str) -> Self {
        let mut figures = Self::default();
        let Some(stats) = document["stats"].as_array() else {
            return figures;
        };
        for stat in stats {
            if let (Some(name), Some(value)) = (stat["name"].as_str(), stat["value"].as_u64()) {
                figures.add_scalar(name, value, rollout);
            }
            if let Some(histograms) = stat.get("histograms") {
                figures.add_quantiles(histograms, rollout);
            }
        }
        figures
    }

    fn variant(&mut self, labels: &BTreeMap<&str, &str>) -> Option<&mut VariantFigures> {
        let name = labels.get("variant")?;
        Some(self.variants.entry((*name).to_owned()).or_default())
    }

    fn add_scalar(&mut self, name: &str, value: u64, rollout: &str) {
        let labels = labels(name);
        if labels.get("rollout") != Some(&rollout) {
            return;
        }
        match base(name) {
            "outrider.rq_total" => self
                .variant(&labels)
                .into_iter()
                .for_each(|v| v.requests = value),
            "outrider.weight_basis_points" => self
                .variant(&labels)
                .into_iter()
                .for_each(|v| v.weight_bp = value),
            "outrider.override_honoured_total" => self
                .variant(&labels)
                .into_iter()
                .for_each(|v| v.overrides_honoured = value),
            "outrider.rs_total" => {
                let index = ["2xx", "3xx", "4xx", "5xx"]
                    .iter()
                    .position(|c| labels.get("class") == Some(c));
                if let (Some(i), Some(v)) = (index, self.variant(&labels))
                    && let Some(slot) = v.classes.get_mut(i)
                {
                    *slot = value;
                }
            }
            "outrider.override_rejected_total" => {
                if let Some(reason) = labels.get("reason") {
                    self.overrides_rejected.insert((*reason).to_owned(), value);
                }
            }
            "outrider.rq_unkeyed_total" => self.unkeyed = value,
            _ => {}
        }
    }

    fn add_quantiles(&mut self, histograms: &Value, rollout: &str) {
        let supported: Vec<f64> = histograms["supported_quantiles"]
            .as_array()
            .map(|q| q.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let position = |q: f64| supported.iter().position(|s| (*s - q).abs() < 1e-9);
        let (Some(p50), Some(p99)) = (position(50.0), position(99.0)) else {
            return;
        };
        for computed in histograms["computed_quantiles"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(name) = computed["name"].as_str() else {
                continue;
            };
            let labels = labels(name);
            if base(name) != "outrider.upstream_rq_time" || labels.get("rollout") != Some(&rollout)
            {
                continue;
            }
            let values = &computed["values"];
            let cumulative = |i: usize| values[i]["cumulative"].as_f64();
            let interval = |i: usize| values[i]["interval"].as_f64();
            if let Some(v) = self.variant(&labels) {
                v.p50_ms = cumulative(p50);
                v.interval_p50_ms = interval(p50);
                v.interval_p99_ms = interval(p99);
                v.p99_ms = cumulative(p99);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_counters_gauges_and_quantiles() {
        let document = json!({"stats": [
            {"name": "wasmcustom.outrider.rq_total.rollout=fraud.variant=canary", "value": 12},
            {"name": "wasmcustom.outrider.rq_total.rollout=other.variant=canary", "value": 99},
            {"name": "wasmcustom.outrider.rs_total.rollout=fraud.variant=canary.class=5xx", "value": 2},
            {"name": "wasmcustom.outrider.weight_basis_points.rollout=fraud.variant=canary", "value": 1000},
            {"name": "wasmcustom.outrider.override_rejected_total.rollout=fraud.reason=expired", "value": 3},
            {"name": "cluster.stable.upstream_rq_total", "value": 7},
            {"histograms": {
                "supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
                "computed_quantiles": [{
                    "name": "wasmcustom.outrider.upstream_rq_time.rollout=fraud.variant=canary",
                    "values": [{}, {}, {"cumulative": 7.5}, {}, {}, {}, {"cumulative": 19.0}, {}, {}, {}]
                }]
            }}
        ]});
        let figures = RolloutFigures::from_admin_json(&document, "fraud");
        let canary = &figures.variants["canary"];
        assert_eq!(canary.requests, 12);
        assert_eq!(canary.classes, [0, 0, 0, 2]);
        assert_eq!(canary.weight_bp, 1000);
        assert_eq!(canary.p50_ms, Some(7.5));
        assert_eq!(canary.p99_ms, Some(19.0));
        assert_eq!(figures.overrides_rejected["expired"], 3);
        assert_eq!(figures.variants.len(), 1);
    }
}
