//! The link to the scorer, driven by the root context's tick on every worker:
//!
//! - one worker per Envoy holds a lease in shared data and polls the rollout state
//!   (with `if-none-match`, so an unchanged state is an empty 304); it stores what it
//!   gets in shared data;
//! - every worker applies a newer stored state to its own requests at its next tick;
//! - every worker flushes its telemetry on a timer, keeping unsent batches in a
//!   bounded outbox while the scorer is unreachable.
//!
//! Nothing here runs on the request path, and a scorer that is down only makes the
//! weights stale (the `state_age_ms` gauge shows by how much).

use std::time::Duration;

use outrider_filter_logic::Rollout;
use outrider_filter_logic::lease::{Lease, LeaseAction, lease_action, lease_ms};
use outrider_filter_logic::link::ScorerLink;
use outrider_filter_logic::telemetry::Outbox;
use outrider_protocol::RolloutState;
use proxy_wasm::types::LogLevel;
use serde::{Deserialize, Serialize};

use crate::host;
use crate::root::Worker;
use crate::stats::LinkStats;

/// Largest state document read from the scorer.
const MAX_STATE_BYTES: usize = 64 * 1024;

/// What the polling worker leaves in shared data for the others.
#[derive(Serialize, Deserialize)]
struct StoredState {
    etag: Option<String>,
    state: RolloutState,
}

/// An HTTP call in flight.
enum Call {
    Poll,
    Flush(String),
}

pub struct Link {
    config: ScorerLink,
    rollout: String,
    worker_id: u64,
    proxy: String,
    lease_key: String,
    state_key: String,
    polled_key: String,
    /// When our lease runs out, if we hold it.
    lease_until_ms: Option<u64>,
    next_poll_ms: u64,
    next_flush_ms: u64,
    in_flight: Vec<(u32, Call)>,
    /// Shared-data token of the stored state last looked at.
    seen_cas: Option<u32>,
    applied_version: u64,
    configured_ms: u64,
    outbox: Outbox,
    reported_drops: u64,
    stats: LinkStats,
}

impl Link {
    pub fn new(
        config: ScorerLink,
        rollout: &str,
        worker_id: u64,
        proxy: String,
        stats: LinkStats,
        now_ms: u64,
    ) -> Self {
        let outbox = Outbox::new(config.max_pending_batches);
        Self {
            lease_key: format!("outrider/{rollout}/lease"),
            state_key: format!("outrider/{rollout}/state"),
            polled_key: format!("outrider/{rollout}/polled"),
            rollout: rollout.to_owned(),
            worker_id,
            proxy,
            lease_until_ms: None,
            next_poll_ms: now_ms,
            next_flush_ms: now_ms + config.flush_interval_ms,
            in_flight: Vec::new(),
            seen_cas: None,
            applied_version: 0,
            configured_ms: now_ms,
            outbox,
            reported_drops: 0,
            stats,
            config,
        }
    }

    pub fn tick_period(&self) -> Duration {
        // Fast enough that a new state reaches every worker well within a poll
        // interval, slow enough to cost nothing.
        Duration::from_millis((self.config.poll_interval_ms / 4).clamp(20, 250))
    }

    /// One tick: keep or take the lease, poll if due, pick up a newer state (returned
    /// as the rollout to use from now on), report staleness, flush telemetry if due.
    pub fn tick(&mut self, now_ms: u64, current: &Rollout, worker: &Worker) -> Option<Rollout> {
        if self.lead(now_ms) && now_ms >= self.next_poll_ms && !self.polling() {
            self.next_poll_ms = now_ms + self.config.poll_interval_ms;
            self.poll();
        }
        let updated = self.pick_up_state(current);
        self.report_age(now_ms);
        if now_ms >= self.next_flush_ms {
            self.next_flush_ms = now_ms + self.config.flush_interval_ms;
            self.flush(now_ms, worker);
        }
        updated
    }

    fn polling(&self) -> bool {
        self.in_flight.iter().any(|(_, c)| matches!(c, Call::Poll))
    }

    fn flushing(&self) -> bool {
        self.in_flight
            .iter()
            .any(|(_, c)| matches!(c, Call::Flush(_)))
    }

    /// Whether this worker holds the polling lease after this tick.
    fn lead(&mut self, now_ms: u64) -> bool {
        let ttl = lease_ms(self.config.poll_interval_ms);
        // Renew only when half the lease is gone: fewer writes, same safety.
        if self
            .lease_until_ms
            .is_some_and(|until| until > now_ms + ttl / 2)
        {
            return true;
        }
        let (value, cas) = host::shared_get(&self.lease_key);
        let current = value.as_deref().and_then(Lease::decode);
        let leading = match lease_action(current.as_ref(), self.worker_id, now_ms) {
            LeaseAction::Follow => false,
            LeaseAction::Renew | LeaseAction::Take => {
                let lease = Lease {
                    holder: self.worker_id,
                    expires_ms: now_ms + ttl,
                };
                host::shared_set(&self.lease_key, lease.encode().as_bytes(), cas)
            }
        };
        self.lease_until_ms = leading.then_some(now_ms + ttl);
        leading
    }

    fn poll(&mut self) {
        let path = format!("/v1/rollouts/{}/state", self.rollout);
        let etag = host::shared_get(&self.state_key)
            .0
            .and_then(|bytes| serde_json::from_slice::<StoredState>(&bytes).ok())
            .and_then(|s| s.etag);
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", self.config.authority.as_str()),
            ("x-outrider-proxy", self.proxy.as_str()),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        match host::http_call(
            &self.config.cluster,
            headers,
            None,
            Duration::from_millis(self.config.timeout_ms),
        ) {
            Some(token) => self.in_flight.push((token, Call::Poll)),
            None => self.stats.poll("failed"),
        }
    }

    /// Applies the stored state if it is newer than the one in effect.
    fn pick_up_state(&mut self, current: &Rollout) -> Option<Rollout> {
        let (value, cas) = host::shared_get(&self.state_key);
        if cas.is_none() || cas == self.seen_cas {
            return None;
        }
        self.seen_cas = cas;
        let stored: StoredState = serde_json::from_slice(&value?).ok()?;
        if stored.state.version <= self.applied_version {
            return None;
        }
        self.applied_version = stored.state.version;
        match current.with_state(&stored.state) {
            Ok(next) => {
                self.stats.version(stored.state.version);
                Some(next)
            }
            Err(e) => {
                self.stats.rejected();
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "rollout `{}`: state version {} not applied: {e}",
                        self.rollout, stored.state.version
                    ),
                );
                None
            }
        }
    }

    fn report_age(&self, now_ms: u64) {
        let polled = host::shared_get(&self.polled_key)
            .0
            .and_then(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .unwrap_or(self.configured_ms);
        self.stats.age(now_ms.saturating_sub(polled));
    }

    fn flush(&mut self, now_ms: u64, worker: &Worker) {
        if let Some(batch) = worker.take_batch(
            &self.rollout,
            &self.proxy,
            self.worker_id,
            self.outbox.dropped(),
            now_ms,
        ) {
            self.outbox.push(&batch);
        }
        let drops = self.outbox.dropped();
        if drops > self.reported_drops {
            self.stats.batches("dropped", drops - self.reported_drops);
            self.reported_drops = drops;
        }
        if self.flushing() {
            return;
        }
        let Some(next) = self.outbox.next() else {
            return;
        };
        let authorization = self.config.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            (":method", "POST"),
            (":path", "/v1/telemetry"),
            (":authority", self.config.authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(a) = &authorization {
            headers.push(("authorization", a.as_str()));
        }
        let id = next.id.clone();
        match host::http_call(
            &self.config.cluster,
            headers,
            Some(&next.body),
            Duration::from_millis(self.config.timeout_ms),
        ) {
            Some(token) => self.in_flight.push((token, Call::Flush(id))),
            None => self.stats.batches("failed", 1),
        }
    }

    /// Handles the answer to one of our calls; false if the token is not ours.
    pub fn on_response(&mut self, token: u32, body_size: usize, now_ms: u64) -> bool {
        let Some(position) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, call) = self.in_flight.swap_remove(position);
        // A call that never reached the scorer (no upstream, timeout) has no status.
        let status = host::call_response_header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        match call {
            Call::Poll => self.polled(status, body_size, now_ms),
            Call::Flush(id) => match status {
                200..=299 => {
                    self.outbox.done(&id);
                    self.stats.batches("sent", 1);
                }
                // The scorer will never take this batch (unknown rollout, a variant it
                // does not know): keeping it would block the ones behind it.
                400..=499 if status != 408 && status != 429 => {
                    self.outbox.done(&id);
                    self.stats.batches("rejected", 1);
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "rollout `{}`: the scorer refused telemetry batch {id} ({status})",
                            self.rollout
                        ),
                    );
                }
                _ => self.stats.batches("failed", 1),
            },
        }
        true
    }

    fn polled(&mut self, status: u16, body_size: usize, now_ms: u64) {
        let ok = match status {
            200 => {
                let etag = host::call_response_header("etag");
                let state = host::call_response_body(body_size, MAX_STATE_BYTES)
                    .and_then(|body| serde_json::from_slice::<RolloutState>(&body).ok())
                    .filter(|s| s.rollout == self.rollout);
                match state.and_then(|state| serde_json::to_vec(&StoredState { etag, state }).ok())
                {
                    Some(stored) => host::shared_set(&self.state_key, &stored, None),
                    None => false,
                }
            }
            304 => true,
            _ => false,
        };
        if ok {
            host::shared_set(&self.polled_key, now_ms.to_string().as_bytes(), None);
        }
        self.stats.poll(match (ok, status) {
            (true, 304) => "not_modified",
            (true, _) => "ok",
            (false, _) => "failed",
        });
    }
}
