//! What one configuration keeps on one worker, shared by the requests it assigns (the
//! VM is single-threaded): randomness, the recorder, the shadow desk, the guardrail.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use outrider_protocol::{GuardrailTrip, StatusClass};

use crate::assignment::RandomPoints;
use crate::config::Rollout;
use crate::decision::{Decision, Via};
use crate::desk::{Desk, Event};
use crate::guardrail::{Change, Guard, Record, bit, effective_weights, record_key};
use crate::host::{Host, LogLevel};
use crate::recorder::Recorder;

/// How often a worker looks at the Envoy's guardrail record, at most.
pub const GUARDRAIL_READ_MS: u64 = 50;

pub struct Worker {
    pub random: RandomPoints,
    recorder: RefCell<Recorder>,
    desk: RefCell<Desk>,
    /// Variants a guardrail holds at 0% on this worker, as bits: read by every request.
    tripped: Cell<u32>,
    guardrail: Option<Guardrail>,
}

/// A worker's part in the guardrail.
struct Guardrail {
    guard: RefCell<Guard>,
    rollout: String,
    names: Vec<String>,
    key: String,
    /// The weights in effect before any trip, in basis points.
    weights: RefCell<Vec<u32>>,
    /// Shared-data token of the record last read.
    seen_cas: Cell<Option<u32>>,
    next_read_ms: Cell<u64>,
    /// An earlier configuration's worker, finishing requests in flight: it neither
    /// publishes nor follows trips.
    retired: Cell<bool>,
}

impl Worker {
    pub fn new(
        host: &impl Host,
        rollout: &Rollout,
        seed: u64,
        now_ms: u64,
    ) -> Result<Self, String> {
        let names: Vec<String> = rollout.variants.iter().map(|v| v.name.clone()).collect();
        let guardrail = rollout.guardrail.as_ref().map(|limits| Guardrail {
            guard: RefCell::new(Guard::new(limits, names.clone(), now_ms)),
            rollout: rollout.name.clone(),
            key: record_key(&rollout.name),
            names,
            weights: RefCell::new(rollout.variants.iter().map(|v| v.weight_bp).collect()),
            seen_cas: Cell::new(None),
            next_read_ms: Cell::new(now_ms),
            retired: Cell::new(false),
        });
        Ok(Self {
            random: RandomPoints::new(seed),
            recorder: RefCell::new(Recorder::define(host, rollout, now_ms)?),
            desk: RefCell::new(Desk::new(rollout.shadows.len())),
            tripped: Cell::new(0),
            guardrail,
        })
    }

    /// Sends a request the weights gave a tripped variant to the baseline instead. An
    /// override still reaches the variant, as it reaches one at weight 0.
    pub fn route(&self, decision: &mut Decision) {
        let tripped = self.tripped.get();
        if tripped != 0 && tripped & bit(decision.variant) != 0 && decision.via != Via::Override {
            decision.variant = 0;
        }
    }

    /// A response's headers: recorded, and judged by the guardrail.
    pub fn response(
        &self,
        host: &impl Host,
        variant: usize,
        class: Option<StatusClass>,
        latency_ms: u64,
        at_ms: u64,
    ) {
        self.record(|r| r.response(host, variant, class, latency_ms));
        if let Some(g) = self.judging() {
            let change = g
                .guard
                .try_borrow_mut()
                .ok()
                .and_then(|mut guard| guard.response(variant, at_ms, class, latency_ms));
            self.guardrail_changed(host, g, change.into_iter().collect());
        }
    }

    /// A non-OK `grpc-status` in the answer to a request answered at `at_ms`.
    pub fn grpc_error(&self, host: &impl Host, variant: usize, bucket: usize, at_ms: u64) {
        self.record(|r| r.grpc_error(host, variant, bucket));
        if let Some(g) = self.judging() {
            let change = g
                .guard
                .try_borrow_mut()
                .ok()
                .and_then(|mut guard| guard.grpc_error(variant, at_ms));
            self.guardrail_changed(host, g, change.into_iter().collect());
        }
    }

    /// On the root's tick (at most every [`GUARDRAIL_READ_MS`]): applies the trips other
    /// workers of this Envoy judged, if the record changed since the last look.
    pub fn follow_guardrail(&self, host: &impl Host, now_ms: u64) {
        let Some(g) = &self.guardrail else {
            return;
        };
        if g.retired.get() || now_ms < g.next_read_ms.get() {
            return;
        }
        g.next_read_ms.set(now_ms + GUARDRAIL_READ_MS);
        let (value, cas) = host.shared_get(&g.key);
        if cas.is_none() || cas == g.seen_cas.get() {
            return;
        }
        g.seen_cas.set(cas);
        let Some(record) = value.map(|v| Record::decode(&v)) else {
            return;
        };
        let changes = g
            .guard
            .try_borrow_mut()
            .map(|mut guard| guard.follow(&record))
            .unwrap_or_default();
        self.guardrail_changed(host, g, changes);
    }

    /// A state from the scorer is in effect from now on: trips made under an older
    /// state are lifted; the weight gauges show the weights with the trips left.
    pub fn state_applied(&self, host: &impl Host, rollout: &Rollout, version: u64) {
        let weights: Vec<u32> = rollout.variants.iter().map(|v| v.weight_bp).collect();
        match &self.guardrail {
            Some(g) => {
                // Trips the record lists that an older state kept out may apply now.
                g.seen_cas.set(None);
                if let Ok(mut w) = g.weights.try_borrow_mut() {
                    w.clone_from(&weights);
                }
                let changes = g
                    .guard
                    .try_borrow_mut()
                    .map(|mut guard| guard.state_applied(version))
                    .unwrap_or_default();
                if changes.is_empty() {
                    self.set_weight_gauges(host, &weights);
                } else {
                    // Sets the gauges too.
                    self.guardrail_changed(host, g, changes);
                }
            }
            None => {
                self.record(|r| r.weights(host, &weights));
            }
        }
    }

    /// The guardrail, unless there is none or this worker is retired: the requests a
    /// retired worker finishes are not judged.
    fn judging(&self) -> Option<&Guardrail> {
        self.guardrail.as_ref().filter(|g| !g.retired.get())
    }

    /// A newer configuration took over: this worker only finishes its requests.
    pub fn retire(&self) {
        if let Some(g) = &self.guardrail {
            g.retired.set(true);
        }
    }

    fn set_weight_gauges(&self, host: &impl Host, weights: &[u32]) {
        let effective = effective_weights(weights, self.tripped.get());
        self.record(|r| r.weights(host, &effective));
    }

    /// What a guardrail change does: the routing bits, the gauges, the stat, the log,
    /// the telemetry, and for a trip judged here the Envoy's record.
    fn guardrail_changed(&self, host: &impl Host, g: &Guardrail, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Ok(guard) = g.guard.try_borrow() {
            self.tripped.set(guard.mask());
        }
        let baseline = g.names.first().map_or("", String::as_str);
        let rollout = g.rollout.as_str();
        for change in changes {
            match change {
                Change::Tripped(variant, trip) => {
                    self.record(|r| r.guardrail_trip(variant, &trip));
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "rollout `{rollout}`: guardrail tripped: variant `{}` at 0% on \
                             this Envoy (its requests go to `{baseline}`) until a state newer \
                             than version {}: {}",
                            trip.variant,
                            trip.state_version,
                            trip.figures()
                        ),
                    );
                    publish(host, g, trip);
                }
                Change::Followed(_, trip) => host.log(
                    LogLevel::Info,
                    &format!(
                        "rollout `{rollout}`: variant `{}` at 0% on this worker too: \
                         guardrail tripped by another worker ({})",
                        trip.variant,
                        trip.figures()
                    ),
                ),
                Change::Lifted(_, trip) => host.log(
                    LogLevel::Info,
                    &format!(
                        "rollout `{rollout}`: guardrail on variant `{}` lifted: a state newer \
                         than version {} is in effect",
                        trip.variant, trip.state_version
                    ),
                ),
            }
        }
        let weights = g
            .weights
            .try_borrow()
            .map(|w| w.clone())
            .unwrap_or_default();
        self.set_weight_gauges(host, &weights);
    }

    /// Records into the recorder. Callbacks never nest, so the borrow always succeeds;
    /// if it did not, the record would be skipped, not panic.
    pub fn record<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> Option<T> {
        self.recorder.try_borrow_mut().ok().map(|mut r| f(&mut r))
    }

    /// Works at the shadow desk, then records what it reports.
    pub fn at_desk<T>(
        &self,
        host: &impl Host,
        f: impl FnOnce(&mut Desk, &mut Vec<Event>) -> T,
    ) -> Option<T> {
        let mut events = Vec::new();
        let out = self
            .desk
            .try_borrow_mut()
            .ok()
            .map(|mut desk| f(&mut desk, &mut events));
        if !events.is_empty() {
            self.record(|r| r.shadow(host, events));
        }
        out
    }
}

/// Puts a trip into the Envoy's record, for the other workers to follow. A lost
/// compare-and-swap (another worker wrote meanwhile) is tried again on what it wrote.
fn publish(host: &impl Host, g: &Guardrail, trip: GuardrailTrip) {
    let since = g
        .guard
        .try_borrow()
        .map(|guard| guard.configured_ms())
        .unwrap_or(0);
    for _ in 0..3 {
        let (value, cas) = host.shared_get(&g.key);
        let mut record = value.map(|v| Record::decode(&v)).unwrap_or_default();
        record.put(trip.clone(), since);
        if host.shared_set(&g.key, record.encode().as_bytes(), cas) {
            return;
        }
    }
    host.log(
        LogLevel::Warn,
        &format!(
            "rollout `{}`: guardrail trip of `{}` not shared with the other workers: \
             shared data kept changing; each of them judges on its own",
            g.rollout, trip.variant
        ),
    );
}

/// The rollout in effect, with the worker state of its configuration. A new state from
/// the scorer replaces the rollout and keeps the worker; requests in flight keep the
/// `Active` they started with.
pub struct Active {
    pub rollout: Rollout,
    pub worker: Rc<Worker>,
}
