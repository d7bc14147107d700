//! The scorer's own metrics, served at `/metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    pub rollout: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    pub rollout: String,
    pub variant: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub telemetry_batches: Family<ResultLabels, Counter>,
    pub ingested_requests: Family<VariantLabels, Counter>,
    pub feedback_events: Family<ResultLabels, Counter>,
    pub state_polls: Family<PollLabels, Counter>,
    pub leader: Gauge,
    pub controller_steps: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outrider_scorer");
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "API requests by route, method and status",
            http_requests.clone(),
        );
        let telemetry_batches = Family::default();
        registry.register(
            "telemetry_batches",
            "Telemetry batches received, applied or duplicate",
            telemetry_batches.clone(),
        );
        let ingested_requests = Family::default();
        registry.register(
            "ingested_requests",
            "Requests counted by filters, by rollout and variant, as ingested",
            ingested_requests.clone(),
        );
        let feedback_events = Family::default();
        registry.register(
            "feedback_events",
            "Feedback events, accepted or duplicate",
            feedback_events.clone(),
        );
        let state_polls = Family::default();
        registry.register(
            "state_polls",
            "Rollout state polls by rollout and result (ok, not_modified)",
            state_polls.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs rollout decisions",
            leader.clone(),
        );
        let controller_steps = Counter::default();
        registry.register(
            "controller_steps",
            "Rollout changes made by the controller",
            controller_steps.clone(),
        );
        Self {
            registry,
            http_requests,
            telemetry_batches,
            ingested_requests,
            feedback_events,
            state_polls,
            leader,
            controller_steps,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
