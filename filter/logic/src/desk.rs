//! The shadow desk, owned by the worker's root context. Envoy cancels a stream's calls
//! when the stream ends, and the SDK delivers an answer to the context that made the
//! call, so a request never calls a shadow itself: it hands a job to this desk, the
//! root context sends it on its next tick and receives the answer, and the answer is
//! paired with the primary's when both are in, whichever comes first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use outrider_protocol::{ShadowEnd, ShadowSkip};

use crate::host::{Buffer, Host, Map};
use crate::json_body;
use crate::shadow::{Answer, Comparison, compare};

/// A copy of a request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug)]
struct Pair {
    shadow: usize,
    threshold: f64,
    pointer: String,
    primary: Option<Answer>,
    shadow_answer: Option<Answer>,
    created_ms: u64,
}

#[derive(Debug)]
struct Call {
    token: u32,
    pair: u64,
    shadow: usize,
    sent_ms: u64,
    timeout_ms: u64,
    max_body_bytes: usize,
}

/// What the desk reports, for the recorder to count.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Mirrored {
        shadow: usize,
    },
    Skipped {
        shadow: usize,
        reason: ShadowSkip,
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
}

/// Pairs whose primary never answered (the client went away) are given up after this
/// long past the shadow's own timeout.
pub const PAIR_GRACE_MS: u64 = 30_000;

/// A call whose answer (no status, or Envoy's own 504) comes this close to its timeout
/// was ended by the timeout: a tenth of the timeout, at least 5 ms and at most 100 ms.
/// Envoy starts the timer at the time its event loop cached when the loop woke, which
/// can be several milliseconds before the tick that sent the call read the clock (on a
/// busy machine, more), so a timeout can look a little shorter than it was.
fn timeout_slack_ms(timeout_ms: u64) -> u64 {
    (timeout_ms / 10).clamp(5, 100)
}

/// What a shadow needs a reservation to know.
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    pub shadow: usize,
    /// Copies this shadow may have queued or in flight on this worker.
    pub cap: usize,
    pub threshold: f64,
    /// Where the shadow's answer holds its prediction.
    pub pointer: &'a str,
}

#[derive(Debug, Default)]
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

    /// A pair for a request about to be copied to a shadow, unless the shadow already
    /// has its cap of copies queued or in flight on this worker.
    pub fn reserve(&mut self, r: Reservation<'_>, now_ms: u64) -> Option<u64> {
        let busy = self.busy.get_mut(r.shadow)?;
        if *busy >= r.cap {
            return None;
        }
        *busy += 1;
        self.next_pair += 1;
        self.pairs.insert(
            self.next_pair,
            Pair {
                shadow: r.shadow,
                threshold: r.threshold,
                pointer: r.pointer.to_owned(),
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

    /// The request will not be copied after all (its body is too large, or its stream
    /// ended before it was complete).
    pub fn abandon(&mut self, pair: u64) {
        if let Some(p) = self.pairs.remove(&pair) {
            self.release(p.shadow);
        }
    }

    /// Sends every queued copy; returns how many it took from the queue.
    pub fn dispatch(&mut self, host: &impl Host, now_ms: u64, events: &mut Vec<Event>) -> usize {
        let taken = self.queue.len();
        while let Some(job) = self.queue.pop_front() {
            let headers: Vec<(&str, &str)> = job
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = (!job.body.is_empty()).then_some(job.body.as_slice());
            let timeout = Duration::from_millis(job.timeout_ms);
            match host.http_call(&job.cluster, &headers, body, timeout) {
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
                    events.push(Event::Skipped {
                        shadow: job.shadow,
                        reason: ShadowSkip::DispatchFailed,
                    });
                    self.abandon(job.pair);
                }
            }
        }
        taken
    }

    /// Handles the answer to a shadow call; false if the token is not one of ours.
    pub fn on_response(
        &mut self,
        host: &impl Host,
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
        let status = host
            .header(Map::CallResponseHeaders, ":status")
            .and_then(|s| s.parse::<u16>().ok());
        // When the timeout strikes, Envoy answers the call itself with a 504; a 504
        // (or no answer) that took the whole timeout is that, not the shadow's word.
        let timed_out = latency_ms + timeout_slack_ms(call.timeout_ms) >= call.timeout_ms;
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
        let score = (body_size <= call.max_body_bytes)
            .then(|| host.buffer(Buffer::CallResponseBody, body_size))
            .flatten()
            .and_then(|body| json_body::score(&body, &pair.pointer));
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

    /// Copies queued or in flight for `shadow`.
    pub fn busy(&self, shadow: usize) -> usize {
        self.busy.get(shadow).copied().unwrap_or(0)
    }

    /// Pairs still waiting for one side or the other.
    pub fn open_pairs(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use outrider_protocol::ComparisonResult;

    use super::*;
    use crate::mock::MockHost;

    const POINTER: &str = "/outputs/0/data/0";

    fn reservation(shadow: usize, cap: usize) -> Reservation<'static> {
        Reservation {
            shadow,
            cap,
            threshold: 0.5,
            pointer: POINTER,
        }
    }

    fn job(pair: u64, shadow: usize) -> Job {
        Job {
            pair,
            shadow,
            cluster: format!("shadow-{shadow}"),
            headers: vec![(":path".into(), "/v2/models/fraud/infer".into())],
            body: b"{}".to_vec(),
            timeout_ms: 1_000,
            max_body_bytes: 1_024,
        }
    }

    fn prediction(score: f64) -> Vec<u8> {
        format!(r#"{{"outputs": [{{"data": [{score}]}}]}}"#).into_bytes()
    }

    /// Sends the queue and returns the tokens of the calls made.
    fn send(desk: &mut Desk, host: &MockHost, events: &mut Vec<Event>) -> Vec<u32> {
        desk.dispatch(host, host.now(), events);
        host.take_calls().iter().map(|c| c.token).collect()
    }

    fn compared(events: &[Event]) -> Vec<ComparisonResult> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Compared { comparison, .. } => Some(comparison.result()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_pair_up_whichever_comes_first() {
        let host = MockHost::new();
        let mut desk = Desk::new(1);
        let mut events = Vec::new();
        let shadow_first = desk.reserve(reservation(0, 8), host.now()).unwrap();
        let primary_first = desk.reserve(reservation(0, 8), host.now()).unwrap();
        desk.submit(job(shadow_first, 0));
        desk.submit(job(primary_first, 0));
        let tokens = send(&mut desk, &host, &mut events);
        assert_eq!(tokens.len(), 2);
        assert_eq!(desk.busy(0), 2);

        host.advance_ms(7);
        let size = host.answer(Some(200), &[], &prediction(0.9));
        assert!(desk.on_response(&host, tokens[0], size, host.now(), &mut events));
        assert!(
            compared(&events).is_empty(),
            "the primary has not answered yet"
        );
        let primary = |score| Answer {
            score: Some(score),
            latency_ms: 3,
        };
        desk.primary(shadow_first, primary(0.8), &mut events);
        desk.primary(primary_first, primary(0.2), &mut events);
        assert_eq!(compared(&events), [ComparisonResult::Agree]);
        let size = host.answer(Some(200), &[], &prediction(0.7));
        desk.on_response(&host, tokens[1], size, host.now(), &mut events);
        assert_eq!(
            compared(&events),
            [ComparisonResult::Agree, ComparisonResult::Disagree]
        );
        assert!(events.contains(&Event::Ended {
            shadow: 0,
            end: ShadowEnd::Completed,
            latency_ms: 7
        }));
        assert_eq!((desk.busy(0), desk.open_pairs()), (0, 0));
        assert!(
            !desk.on_response(&host, 999, 0, host.now(), &mut events),
            "not ours"
        );
    }

    #[test]
    fn each_shadow_has_its_cap_of_copies_in_flight() {
        let host = MockHost::new();
        let mut desk = Desk::new(2);
        let a = desk.reserve(reservation(0, 2), 0).unwrap();
        desk.reserve(reservation(0, 2), 0).unwrap();
        assert_eq!(desk.reserve(reservation(0, 2), 0), None, "cap reached");
        assert!(
            desk.reserve(reservation(1, 2), 0).is_some(),
            "another shadow has its own"
        );
        assert_eq!(desk.reserve(reservation(7, 2), 0), None, "no such shadow");
        desk.abandon(a);
        assert!(
            desk.reserve(reservation(0, 2), 0).is_some(),
            "a place freed"
        );
        let mut events = Vec::new();
        let pair = desk.reserve(reservation(1, 2), 0).unwrap();
        desk.submit(job(pair, 1));
        let tokens = send(&mut desk, &host, &mut events);
        assert_eq!(desk.busy(1), 2);
        let size = host.answer(Some(503), &[], b"");
        desk.on_response(&host, tokens[0], size, host.now(), &mut events);
        assert_eq!(desk.busy(1), 1, "an answer frees its place");
    }

    #[test]
    fn failures_errors_and_timeouts_are_counted_not_compared() {
        let host = MockHost::new();
        let mut desk = Desk::new(1);
        let mut events = Vec::new();
        host.refuse_calls(true);
        let refused = desk.reserve(reservation(0, 8), 0).unwrap();
        desk.submit(job(refused, 0));
        assert!(send(&mut desk, &host, &mut events).is_empty());
        assert_eq!(
            events,
            [Event::Skipped {
                shadow: 0,
                reason: ShadowSkip::DispatchFailed
            }]
        );
        assert_eq!((desk.busy(0), desk.open_pairs()), (0, 0));
        host.refuse_calls(false);

        let mut ends = Vec::new();
        for (status, after_ms) in [
            (Some(500), 10),
            (Some(504), 10),
            (Some(504), 998),
            (None, 999),
            (None, 20),
            // Within a tenth of the 1 s timeout: Envoy's timer, started a little
            // before the clock was read.
            (Some(504), 950),
            (Some(504), 850),
        ] {
            let mut events = Vec::new();
            let pair = desk.reserve(reservation(0, 8), host.now()).unwrap();
            desk.submit(job(pair, 0));
            let token = send(&mut desk, &host, &mut events)[0];
            host.advance_ms(after_ms);
            let size = host.answer(status, &[], &prediction(0.9));
            desk.on_response(&host, token, size, host.now(), &mut events);
            desk.primary(
                pair,
                Answer {
                    score: Some(0.9),
                    latency_ms: 1,
                },
                &mut events,
            );
            assert!(compared(&events).is_empty());
            ends.extend(events.iter().filter_map(|e| match e {
                Event::Ended { end, .. } => Some(*end),
                _ => None,
            }));
        }
        use ShadowEnd::{Error, Timeout};
        assert_eq!(
            ends,
            [Error, Error, Timeout, Timeout, Error, Timeout, Error]
        );
        assert_eq!(desk.open_pairs(), 0);
    }

    #[test]
    fn the_timeout_slack_is_a_tenth_of_the_timeout_within_5_to_100_ms() {
        assert_eq!(
            [20, 400, 5_000, 60_000].map(timeout_slack_ms),
            [5, 40, 100, 100]
        );
    }

    #[test]
    fn answers_without_a_prediction_or_over_the_limit() {
        let host = MockHost::new();
        let mut desk = Desk::new(1);
        let mut events = Vec::new();
        let mut results = Vec::new();
        for (body, primary) in [
            (br#"{"error": "boom"}"#.to_vec(), Some(0.1)),
            (prediction(0.1), None),
            (vec![b' '; 2_000], Some(0.1)),
        ] {
            let pair = desk.reserve(reservation(0, 8), 0).unwrap();
            desk.submit(job(pair, 0));
            let token = send(&mut desk, &host, &mut events)[0];
            let size = host.answer(Some(200), &[], &body);
            desk.on_response(&host, token, size, host.now(), &mut events);
            desk.primary(
                pair,
                Answer {
                    score: primary,
                    latency_ms: 1,
                },
                &mut events,
            );
        }
        results.extend(compared(&events));
        assert_eq!(
            results,
            [
                ComparisonResult::NoPredictionShadow,
                ComparisonResult::NoPredictionPrimary,
                ComparisonResult::NoPredictionShadow
            ]
        );
        assert_eq!(
            host.host_calls().get("buffer"),
            Some(&2),
            "a body over the limit is not read"
        );
    }

    #[test]
    fn a_primary_that_goes_away_and_pairs_that_expire() {
        let host = MockHost::new();
        let mut desk = Desk::new(1);
        let mut events = Vec::new();
        let gone = desk.reserve(reservation(0, 8), 0).unwrap();
        desk.submit(job(gone, 0));
        let token = send(&mut desk, &host, &mut events)[0];
        desk.primary_gone(gone, &mut events);
        assert!(events.contains(&Event::Skipped {
            shadow: 0,
            reason: ShadowSkip::PrimaryIncomplete
        }));
        let size = host.answer(Some(200), &[], &prediction(0.4));
        desk.on_response(&host, token, size, host.now(), &mut events);
        assert!(compared(&events).is_empty(), "nothing to compare with");
        assert_eq!(desk.busy(0), 0);

        // The shadow never answers and the primary's stream is long gone.
        let stale = desk.reserve(reservation(0, 8), 1_000).unwrap();
        desk.primary(
            stale,
            Answer {
                score: Some(0.3),
                latency_ms: 1,
            },
            &mut events,
        );
        desk.expire(1_000 + 1_000 + PAIR_GRACE_MS - 1, 1_000);
        assert_eq!(desk.open_pairs(), 1);
        desk.expire(1_000 + 1_000 + PAIR_GRACE_MS, 1_000);
        assert_eq!(desk.open_pairs(), 0);
    }
}
