//! Shadow copies, owned by the worker's root context. Envoy cancels a stream's calls
//! when the stream ends, and the SDK delivers an answer to the context that made the
//! call, so a request never calls a shadow itself: it hands a job to this desk, the
//! root context sends it on its next tick and receives the answer, and the answer is
//! paired with the primary's when both are in, whichever comes first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use outrider_filter_logic::shadow::{Answer, Comparison, compare, read_score};
use outrider_filter_logic::telemetry::ShadowEnd;
use outrider_protocol::ShadowSkip;

use crate::host;

/// A copy of a request, ready to send.
pub struct Job {
    pub pair: u64,
    pub shadow: usize,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
    pub max_body_bytes: usize,
}

/// The two sides of one comparison.
struct Pair {
    shadow: usize,
    threshold: f64,
    pointer: String,
    primary: Option<Answer>,
    shadow_answer: Option<Answer>,
    created_ms: u64,
}

struct Call {
    token: u32,
    pair: u64,
    shadow: usize,
    sent_ms: u64,
    timeout_ms: u64,
    max_body_bytes: usize,
}

/// What the desk reports for the caller to count.
pub enum Event {
    Mirrored {
        shadow: usize,
    },
    /// A copy could not even be handed to Envoy.
    Failed {
        shadow: usize,
    },
    Ended {
        shadow: usize,
        end: ShadowEnd,
        latency_ms: u64,
    },
    Compared {
        shadow: usize,
        comparison: Comparison,
        primary_latency_ms: u64,
    },
    Skipped {
        shadow: usize,
        reason: ShadowSkip,
    },
}

/// Pairs whose primary never answered (the client went away) are given up after this
/// long past the shadow's own timeout.
const PAIR_GRACE_MS: u64 = 30_000;

#[derive(Default)]
pub struct Desk {
    queue: VecDeque<Job>,
    calls: Vec<Call>,
    pairs: HashMap<u64, Pair>,
    /// Jobs queued or in flight, per shadow.
    busy: Vec<usize>,
    next_pair: u64,
}

impl Desk {
    pub fn new(shadows: usize) -> Self {
        Self {
            busy: vec![0; shadows],
            ..Self::default()
        }
    }

    /// A pair for a request about to be copied to `shadow`, unless the shadow already
    /// has `cap` copies queued or in flight on this worker.
    pub fn reserve(
        &mut self,
        shadow: usize,
        cap: usize,
        threshold: f64,
        pointer: &str,
        now_ms: u64,
    ) -> Option<u64> {
        let busy = self.busy.get_mut(shadow)?;
        if *busy >= cap {
            return None;
        }
        *busy += 1;
        self.next_pair += 1;
        self.pairs.insert(
            self.next_pair,
            Pair {
                shadow,
                threshold,
                pointer: pointer.to_owned(),
                primary: None,
                shadow_answer: None,
                created_ms: now_ms,
            },
        );
        Some(self.next_pair)
    }

    fn release(&mut self, shadow: usize) {
        if let Some(busy) = self.busy.get_mut(shadow) {
            *busy = busy.saturating_sub(1);
        }
    }

    pub fn submit(&mut self, job: Job) {
        self.queue.push_back(job);
    }

    /// The request will not be copied after all (its body is too large).
    pub fn abandon(&mut self, pair: u64) {
        if let Some(p) = self.pairs.remove(&pair) {
            self.release(p.shadow);
        }
    }

    /// Sends every queued copy; returns how many it took from the queue.
    pub fn dispatch(&mut self, now_ms: u64, events: &mut Vec<Event>) -> usize {
        let taken = self.queue.len();
        while let Some(job) = self.queue.pop_front() {
            let headers: Vec<(&str, &str)> = job
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = (!job.body.is_empty()).then_some(job.body.as_slice());
            match host::http_call(
                &job.cluster,
                headers,
                body,
                Duration::from_millis(job.timeout_ms),
            ) {
                Some(token) => {
                    events.push(Event::Mirrored { shadow: job.shadow });
                    self.calls.push(Call {
                        token,
                        pair: job.pair,
                        shadow: job.shadow,
                        sent_ms: now_ms,
                        timeout_ms: job.timeout_ms,
                        max_body_bytes: job.max_body_bytes,
                    });
                }
                None => {
                    events.push(Event::Failed { shadow: job.shadow });
                    self.abandon(job.pair);
                }
            }
        }
        taken
    }

    /// Handles the answer to a shadow call; false if the token is not one of ours.
    pub fn on_response(
        &mut self,
        token: u32,
        body_size: usize,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) -> bool {
        let Some(i) = self.calls.iter().position(|c| c.token == token) else {
            return false;
        };
        let call = self.calls.swap_remove(i);
        self.release(call.shadow);
        let latency_ms = now_ms.saturating_sub(call.sent_ms);
        let status = host::call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        // When the timeout strikes, Envoy answers the call itself with a 504; a 504
        // (or no answer) that took the whole timeout is that, not the shadow's word.
        let timed_out = latency_ms + 5 >= call.timeout_ms;
        let end = match status {
            Some(200..=299) => ShadowEnd::Completed,
            Some(504) | None if timed_out => ShadowEnd::Timeout,
            _ => ShadowEnd::Error,
        };
        events.push(Event::Ended {
            shadow: call.shadow,
            end,
            latency_ms,
        });
        let Some(pair) = self.pairs.get_mut(&call.pair) else {
            return true;
        };
        if end != ShadowEnd::Completed {
            // Errors are counted as such, not compared.
            self.pairs.remove(&call.pair);
            return true;
        }
        let score = host::call_response_body(body_size, call.max_body_bytes)
            .and_then(|body| read_score(&body, &pair.pointer));
        pair.shadow_answer = Some(Answer { score, latency_ms });
        self.settle(call.pair, events);
        true
    }

    /// The primary's answer for `pair`.
    pub fn primary(&mut self, pair: u64, answer: Answer, events: &mut Vec<Event>) {
        if let Some(p) = self.pairs.get_mut(&pair) {
            p.primary = Some(answer);
            self.settle(pair, events);
        }
    }

    /// The primary will not answer (its stream ended first).
    pub fn primary_gone(&mut self, pair: u64, events: &mut Vec<Event>) {
        if let Some(p) = self.pairs.get(&pair)
            && p.primary.is_none()
        {
            events.push(Event::Skipped {
                shadow: p.shadow,
                reason: ShadowSkip::PrimaryIncomplete,
            });
            self.pairs.remove(&pair);
        }
    }

    fn settle(&mut self, pair: u64, events: &mut Vec<Event>) {
        let Some(p) = self.pairs.get(&pair) else {
            return;
        };
        if let (Some(primary), Some(shadow)) = (p.primary, p.shadow_answer) {
            events.push(Event::Compared {
                shadow: p.shadow,
                comparison: compare(primary, shadow, p.threshold),
                primary_latency_ms: primary.latency_ms,
            });
            self.pairs.remove(&pair);
        }
    }

    /// Forgets pairs that can no longer complete.
    pub fn expire(&mut self, now_ms: u64, max_timeout_ms: u64) {
        let stale = max_timeout_ms + PAIR_GRACE_MS;
        self.pairs
            .retain(|_, p| now_ms.saturating_sub(p.created_ms) < stale);
    }
}
