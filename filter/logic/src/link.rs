//! The link to the scorer, driven by the root context's tick on every worker:
//!
//! - one worker per Envoy holds a lease in shared data ([`crate::lease`]) and polls the
//!   rollout state (with `if-none-match`, so an unchanged state is an empty 304); it
//!   stores what it gets in shared data;
//! - every worker applies a newer stored state to its own requests at its next tick;
//! - every worker makes one telemetry batch per flush interval (an empty one when
//!   nothing happened and nothing is waiting) and keeps it in a bounded outbox until
//!   the scorer takes it. Batches go out in order, one call at a time; each answer
//!   sends the next at once, so a backlog left by an outage drains at the speed of
//!   the scorer, not one batch per interval. A failed call waits for the next flush.
//!
//! Nothing here runs on the request path, and a scorer that is down only makes the
//! weights stale (the `state_age_ms` gauge shows by how much).

use std::time::Duration;

use outrider_protocol::{BatchResult, PollResult, RolloutState};
use serde::{Deserialize, Serialize};

use crate::backlog::{Backlog, Figures};
use crate::config::{Rollout, ScorerLink};
use crate::host::{Buffer, Host, LogLevel, Map};
use crate::lease::{Lease, LeaseAction, lease_action, lease_ms};
use crate::outbox::Outbox;
use crate::recorder::Recorder;
use crate::stats::{Counters, LinkStats};

/// A refused batch is logged at most this often (an unknown rollout refuses them all).
const REFUSAL_LOG_MS: u64 = 60_000;

/// Largest state document read from the scorer.
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// What the polling worker leaves in shared data for the others.
#[derive(Serialize, Deserialize)]
struct StoredState {
    etag: Option<String>,
    state: RolloutState,
}

/// An HTTP call in flight.
#[derive(Debug)]
enum Call {
    Poll,
    Flush(String),
}

/// Shared-data keys of one rollout.
fn key(rollout: &str, what: &str) -> String {
    format!("outrider/{rollout}/{what}")
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
    /// When a refused batch was last logged: one line a minute at most.
    refusal_logged_ms: Option<u64>,
    backlog: Backlog,
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
            lease_key: key(rollout, "lease"),
            state_key: key(rollout, "state"),
            polled_key: key(rollout, "polled"),
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
            refusal_logged_ms: None,
            backlog: Backlog::new(rollout, worker_id),
            stats,
            config,
        }
    }

    /// How often the link wants a tick: fast enough that a new state reaches every
    /// worker well within a poll interval, slow enough to cost nothing.
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis((self.config.poll_interval_ms / 4).clamp(20, 250))
    }

    /// One tick: keep or take the lease, poll if due, pick up a newer state (returned
    /// as the rollout to use from now on), report staleness, flush telemetry if due.
    pub fn tick(
        &mut self,
        host: &impl Host,
        now_ms: u64,
        current: &Rollout,
        recorder: &mut Recorder,
    ) -> Option<Rollout> {
        let counters = &mut recorder.counters;
        if self.lead(host, now_ms) && now_ms >= self.next_poll_ms && !self.polling() {
            self.next_poll_ms = now_ms + self.config.poll_interval_ms;
            self.poll(host, counters);
        }
        let updated = self.pick_up_state(host, current, counters);
        self.report_age(host, now_ms);
        if now_ms >= self.next_flush_ms {
            self.next_flush_ms = now_ms + self.config.flush_interval_ms;
            self.flush(host, now_ms, recorder);
        }
        let figures = Figures {
            pending: self.outbox.len() as u64,
            oldest_ms: self.outbox.oldest_ms(),
        };
        self.backlog.report(host, now_ms, figures, &self.stats);
        updated
    }

    /// Version of the last state picked up (0: none yet, the configured weights).
    pub fn version(&self) -> u64 {
        self.applied_version
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
    fn lead(&mut self, host: &impl Host, now_ms: u64) -> bool {
        let ttl = lease_ms(self.config.poll_interval_ms);
        // Renew only when half the lease is gone: fewer writes, same safety.
        if self
            .lease_until_ms
            .is_some_and(|until| until > now_ms + ttl / 2)
        {
            return true;
        }
        let (value, cas) = host.shared_get(&self.lease_key);
        let current = value.as_deref().and_then(Lease::decode);
        let leading = match lease_action(current.as_ref(), self.worker_id, now_ms) {
            LeaseAction::Follow => false,
            LeaseAction::Renew | LeaseAction::Take => {
                let lease = Lease {
                    holder: self.worker_id,
                    expires_ms: now_ms + ttl,
                };
                host.shared_set(&self.lease_key, lease.encode().as_bytes(), cas)
            }
        };
        self.lease_until_ms = leading.then_some(now_ms + ttl);
        leading
    }

    fn poll(&mut self, host: &impl Host, counters: &mut Counters) {
        let path = format!("/v1/rollouts/{}/state", self.rollout);
        let etag = host
            .shared_get(&self.state_key)
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
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match host.http_call(&self.config.cluster, &headers, None, timeout) {
            Some(token) => self.in_flight.push((token, Call::Poll)),
            None => self.stats.poll(counters, PollResult::Failed),
        }
    }

    /// Applies the stored state if it is newer than the one in effect.
    fn pick_up_state(
        &mut self,
        host: &impl Host,
        current: &Rollout,
        counters: &mut Counters,
    ) -> Option<Rollout> {
        let (value, cas) = host.shared_get(&self.state_key);
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
                self.stats.version(host, stored.state.version);
                Some(next)
            }
            Err(e) => {
                self.stats.rejected(counters);
                host.log(
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

    fn report_age(&self, host: &impl Host, now_ms: u64) {
        let polled = host
            .shared_get(&self.polled_key)
            .0
            .and_then(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .unwrap_or(self.configured_ms);
        self.stats.age(host, now_ms.saturating_sub(polled));
    }

    fn flush(&mut self, host: &impl Host, now_ms: u64, recorder: &mut Recorder) {
        // An empty batch only when nothing waits: it tells the scorer this worker's
        // telemetry is complete up to now. Behind waiting batches, the next batch
        // covers the quiet time instead.
        if let Some(batch) = recorder.take_batch(
            &self.rollout,
            &self.proxy,
            self.worker_id,
            self.outbox.dropped(),
            now_ms,
            self.outbox.is_empty(),
        ) {
            self.outbox.push(&batch);
        }
        let counters = &mut recorder.counters;
        let drops = self.outbox.dropped();
        if drops > self.reported_drops {
            self.stats
                .batches(counters, BatchResult::Dropped, drops - self.reported_drops);
            self.reported_drops = drops;
        }
        self.send_next(host, counters);
    }

    /// Sends the oldest waiting batch, unless one is on its way: one call at a time
    /// keeps the batches in order.
    fn send_next(&mut self, host: &impl Host, counters: &mut Counters) {
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
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match host.http_call(&self.config.cluster, &headers, Some(&next.body), timeout) {
            Some(token) => self.in_flight.push((token, Call::Flush(id))),
            None => self.stats.batches(counters, BatchResult::Failed, 1),
        }
    }

    /// Handles the answer to one of our calls; false if the token is not ours.
    pub fn on_response(
        &mut self,
        host: &impl Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
        counters: &mut Counters,
    ) -> bool {
        let Some(position) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, call) = self.in_flight.swap_remove(position);
        // A call that never reached the scorer (no upstream, timeout) has no status.
        let status = host
            .header(Map::CallResponseHeaders, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        match call {
            Call::Poll => self.polled(host, status, body_size, now_ms, counters),
            Call::Flush(id) => match status {
                200..=299 => {
                    self.outbox.done(&id);
                    self.stats.batches(counters, BatchResult::Sent, 1);
                    self.send_next(host, counters);
                }
                // The scorer will never take this batch (unknown rollout, a variant it
                // does not know): keeping it would block the ones behind it.
                400..=499 if status != 408 && status != 429 => {
                    self.outbox.done(&id);
                    self.stats.batches(counters, BatchResult::Rejected, 1);
                    if self
                        .refusal_logged_ms
                        .is_none_or(|at| now_ms >= at + REFUSAL_LOG_MS)
                    {
                        self.refusal_logged_ms = Some(now_ms);
                        host.log(
                            LogLevel::Warn,
                            &format!(
                                "rollout `{}`: the scorer refused telemetry batch {id} ({status}); \
                                 refused batches are dropped and counted, logged once a minute",
                                self.rollout
                            ),
                        );
                    }
                    self.send_next(host, counters);
                }
                _ => self.stats.batches(counters, BatchResult::Failed, 1),
            },
        }
        true
    }

    fn polled(
        &mut self,
        host: &impl Host,
        status: u16,
        body_size: usize,
        now_ms: u64,
        counters: &mut Counters,
    ) {
        let ok = match status {
            200 => {
                let etag = host.header(Map::CallResponseHeaders, "etag");
                let state = (body_size <= MAX_STATE_BYTES)
                    .then(|| host.buffer(Buffer::CallResponseBody, body_size))
                    .flatten()
                    .and_then(|body| serde_json::from_slice::<RolloutState>(&body).ok())
                    .filter(|s| s.rollout == self.rollout);
                match state.and_then(|state| serde_json::to_vec(&StoredState { etag, state }).ok())
                {
                    Some(stored) => host.shared_set(&self.state_key, &stored, None),
                    None => false,
                }
            }
            304 => true,
            _ => false,
        };
        if ok {
            host.shared_set(&self.polled_key, now_ms.to_string().as_bytes(), None);
        }
        self.stats.poll(
            counters,
            match (ok, status) {
                (true, 304) => PollResult::NotModified,
                (true, _) => PollResult::Ok,
                (false, _) => PollResult::Failed,
            },
        );
    }
}
