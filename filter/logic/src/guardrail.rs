//! The guardrail: per-variant limits judged by each worker on the traffic it sees, over
//! a sliding window, with no scorer involved.
//!
//! - [`Window`]: one variant's last `window_ms` on one worker, in ten buckets of
//!   `window_ms / 10` (requests answered, 5xx, gRPC errors, responses slower than the
//!   p99 limit). Each response adds to it: arithmetic, no host call.
//! - [`judge`]: once the window holds `min_requests` answered requests, whether a
//!   limit is broken. The p99 is judged exactly, not from histogram buckets: the p99
//!   is above `max_p99_ms` exactly when more than 1% of the requests took longer.
//! - [`Guard`]: a worker's windows and the trips in effect on it. A trip takes the
//!   variant to 0% (its requests go to the baseline, the first variant; nobody else
//!   moves) until a scorer state newer than the one in effect at the trip is applied.
//! - [`Record`]: the trips of an Envoy, in shared data, so every worker applies a trip
//!   one of them judged at its next tick.

use outrider_protocol::{ClosedSet, GuardrailReason, GuardrailTrip, StatusClass};

use crate::config::Guardrail;

/// Buckets a window is kept in.
pub const BUCKETS: u64 = 10;

/// Most trips a record (and a telemetry batch) holds: one per variant.
pub const MAX_TRIPS: usize = outrider_protocol::rules::MAX_VARIANTS;

/// The shared-data key of a rollout's trips.
pub fn record_key(rollout: &str) -> String {
    format!("outrider/{rollout}/guardrail")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// `at_ms / width_ms` of the time it counts.
    epoch: u64,
    counts: Totals,
}

/// What a window (or a bucket) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub server_errors: u64,
    pub grpc_errors: u64,
    /// Responses slower than `max_p99_ms`.
    pub slow: u64,
}

/// One variant's sliding window on one worker.
#[derive(Debug, Clone)]
pub struct Window {
    width_ms: u64,
    buckets: [Bucket; BUCKETS as usize],
}

impl Window {
    pub fn new(window_ms: u64) -> Self {
        Self {
            width_ms: (window_ms / BUCKETS).max(1),
            buckets: [Bucket::default(); BUCKETS as usize],
        }
    }

    /// The span the window covers, ms.
    pub fn span_ms(&self) -> u64 {
        self.width_ms * BUCKETS
    }

    /// The bucket of `at_ms`, started afresh if it last counted an older time; `None`
    /// for a time older than the window (a late gRPC status of a long stream).
    fn bucket(&mut self, at_ms: u64) -> Option<&mut Totals> {
        let epoch = at_ms / self.width_ms;
        let bucket = self.buckets.get_mut((epoch % BUCKETS) as usize)?;
        if bucket.epoch < epoch {
            *bucket = Bucket {
                epoch,
                counts: Totals::default(),
            };
        }
        (bucket.epoch == epoch).then_some(&mut bucket.counts)
    }

    /// A request answered at `at_ms`.
    pub fn response(&mut self, at_ms: u64, server_error: bool, slow: bool) {
        if let Some(b) = self.bucket(at_ms) {
            b.requests += 1;
            b.server_errors += u64::from(server_error);
            b.slow += u64::from(slow);
        }
    }

    /// A gRPC error in the answer to a request answered at `at_ms`.
    pub fn grpc_error(&mut self, at_ms: u64) {
        if let Some(b) = self.bucket(at_ms) {
            b.grpc_errors += 1;
        }
    }

    /// The sums over the window that ends at `at_ms`.
    pub fn totals(&self, at_ms: u64) -> Totals {
        let now = at_ms / self.width_ms;
        self.buckets
            .iter()
            .filter(|b| b.epoch <= now && b.epoch + BUCKETS > now)
            .fold(Totals::default(), |t, b| Totals {
                requests: t.requests + b.counts.requests,
                server_errors: t.server_errors + b.counts.server_errors,
                grpc_errors: t.grpc_errors + b.counts.grpc_errors,
                slow: t.slow + b.counts.slow,
            })
    }

    pub fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS as usize];
    }
}

/// A broken limit, with its figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub reason: GuardrailReason,
    pub requests: u64,
    pub offending: u64,
    pub limit: f64,
}

impl Verdict {
    pub fn share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.offending as f64 / self.requests as f64
        }
    }
}

/// The first limit a window breaks, in the order 5xx share, gRPC error share, p99;
/// nothing before the window holds `min_requests` answered requests.
pub fn judge(t: &Totals, limits: &Guardrail) -> Option<Verdict> {
    if t.requests == 0 || t.requests < limits.min_requests {
        return None;
    }
    let above = |offending: u64, max: f64| offending as f64 > max * t.requests as f64;
    let verdict = |reason, offending, limit| Verdict {
        reason,
        requests: t.requests,
        offending,
        limit,
    };
    if let Some(max) = limits.max_5xx_share
        && above(t.server_errors, max)
    {
        return Some(verdict(
            GuardrailReason::ServerErrorShare,
            t.server_errors,
            max,
        ));
    }
    if let Some(max) = limits.max_grpc_error_share
        && above(t.grpc_errors, max)
    {
        return Some(verdict(GuardrailReason::GrpcErrorShare, t.grpc_errors, max));
    }
    // Nearest rank: the p99 is above the limit exactly when more than 1% are.
    if let Some(ms) = limits.max_p99_ms
        && t.slow.saturating_mul(100) > t.requests
    {
        return Some(verdict(GuardrailReason::P99Latency, t.slow, ms as f64));
    }
    None
}

/// The trips of one Envoy, shared by its workers: the latest trip of each variant.
/// Stored as one line per trip, `<variant> <reason> <requests> <offending> <limit as
/// f64 bits, hex> <window_ms> <at_ms> <state_version>` (a few integers to parse, and
/// the limit exactly as the tripping worker had it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub trips: Vec<GuardrailTrip>,
}

impl Record {
    pub fn encode(&self) -> String {
        self.trips
            .iter()
            .map(|t| {
                format!(
                    "{} {} {} {} {:x} {} {} {}\n",
                    t.variant,
                    t.reason.name(),
                    t.requests,
                    t.offending,
                    t.limit.to_bits(),
                    t.window_ms,
                    t.at_ms,
                    t.state_version
                )
            })
            .collect()
    }

    /// The trips of a stored record; lines that do not read as a trip are left out,
    /// and so is anything past [`MAX_TRIPS`].
    pub fn decode(bytes: &[u8]) -> Record {
        let trips = std::str::from_utf8(bytes)
            .unwrap_or_default()
            .lines()
            .filter_map(decode_trip)
            .take(MAX_TRIPS)
            .collect();
        Record { trips }
    }

    /// Puts a trip in, in place of an earlier one of the same variant, and leaves out
    /// trips from before `since_ms` (those of an earlier configuration).
    pub fn put(&mut self, trip: GuardrailTrip, since_ms: u64) {
        self.trips
            .retain(|t| t.variant != trip.variant && t.at_ms >= since_ms);
        self.trips.push(trip);
        let excess = self.trips.len().saturating_sub(MAX_TRIPS);
        self.trips.drain(..excess);
    }
}

fn decode_trip(line: &str) -> Option<GuardrailTrip> {
    let mut parts = line.split(' ');
    let variant = parts.next()?.to_owned();
    let reason = GuardrailReason::from_name(parts.next()?)?;
    let mut numbers = [0u64; 6];
    for (i, n) in numbers.iter_mut().enumerate() {
        let part = parts.next()?;
        *n = if i == 2 {
            u64::from_str_radix(part, 16).ok()?
        } else {
            part.parse().ok()?
        };
    }
    let [
        requests,
        offending,
        limit_bits,
        window_ms,
        at_ms,
        state_version,
    ] = numbers;
    if variant.is_empty() || parts.next().is_some() || requests == 0 {
        return None;
    }
    Some(GuardrailTrip {
        share: offending as f64 / requests as f64,
        variant,
        reason,
        requests,
        offending,
        limit: f64::from_bits(limit_bits),
        window_ms,
        at_ms,
        state_version,
    })
}

/// What changed on a worker, for its stats and log.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// This worker judged the variant and tripped it.
    Tripped(usize, GuardrailTrip),
    /// Another worker did; this one applies its trip.
    Followed(usize, GuardrailTrip),
    /// A newer state lifted the trip.
    Lifted(usize, GuardrailTrip),
}

/// One worker's windows and the trips in effect on it.
#[derive(Debug)]
pub struct Guard {
    limits: Guardrail,
    /// Per variant of the configuration; `None` for those not guarded.
    windows: Vec<Option<Window>>,
    /// Per variant: the trip that keeps it at 0% on this worker.
    in_effect: Vec<Option<GuardrailTrip>>,
    names: Vec<String>,
    /// Version of the scorer's state in effect (0: the configured weights).
    version: u64,
    /// Trips from before this time belong to an earlier configuration.
    configured_ms: u64,
}

impl Guard {
    pub fn new(limits: &Guardrail, names: Vec<String>, configured_ms: u64) -> Self {
        let windows = (0..names.len())
            .map(|i| {
                limits
                    .variants
                    .contains(&i)
                    .then(|| Window::new(limits.window_ms))
            })
            .collect();
        Self {
            limits: limits.clone(),
            windows,
            in_effect: vec![None; names.len()],
            names,
            version: 0,
            configured_ms,
        }
    }

    /// Trips from before this time belong to an earlier configuration.
    pub fn configured_ms(&self) -> u64 {
        self.configured_ms
    }

    /// The tripped variants as bits (variant `i` is bit `i`).
    pub fn mask(&self) -> u32 {
        self.in_effect
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .fold(0, |mask, (i, _)| mask | bit(i))
    }

    fn tripped(&self, variant: usize) -> bool {
        self.in_effect.get(variant).is_some_and(Option::is_some)
    }

    fn trip(&mut self, variant: usize, verdict: Verdict, at_ms: u64) -> Option<Change> {
        let window_ms = self.windows.get(variant)?.as_ref()?.span_ms();
        let trip = GuardrailTrip {
            variant: self.names.get(variant)?.clone(),
            reason: verdict.reason,
            requests: verdict.requests,
            offending: verdict.offending,
            share: verdict.share(),
            limit: verdict.limit,
            window_ms,
            at_ms,
            state_version: self.version,
        };
        *self.in_effect.get_mut(variant)? = Some(trip.clone());
        Some(Change::Tripped(variant, trip))
    }

    /// A request of `variant` answered at `at_ms`; the trip, if this breaks a limit.
    pub fn response(
        &mut self,
        variant: usize,
        at_ms: u64,
        class: Option<StatusClass>,
        latency_ms: u64,
    ) -> Option<Change> {
        if self.tripped(variant) {
            return None;
        }
        let slow_above = self.limits.max_p99_ms.unwrap_or(u64::MAX);
        let window = self.windows.get_mut(variant)?.as_mut()?;
        window.response(
            at_ms,
            class == Some(StatusClass::ServerError),
            latency_ms > slow_above,
        );
        let verdict = judge(&window.totals(at_ms), &self.limits)?;
        self.trip(variant, verdict, at_ms)
    }

    /// A gRPC error of a request of `variant` answered at `at_ms`.
    pub fn grpc_error(&mut self, variant: usize, at_ms: u64) -> Option<Change> {
        if self.tripped(variant) {
            return None;
        }
        let window = self.windows.get_mut(variant)?.as_mut()?;
        window.grpc_error(at_ms);
        let verdict = judge(&window.totals(at_ms), &self.limits)?;
        self.trip(variant, verdict, at_ms)
    }

    /// Applies the trips of other workers that this one has not: those of this
    /// configuration, made under the state in effect here or a newer one.
    pub fn follow(&mut self, record: &Record) -> Vec<Change> {
        let mut changes = Vec::new();
        for trip in record.trips.iter().take(MAX_TRIPS) {
            if trip.at_ms < self.configured_ms || trip.state_version < self.version {
                continue;
            }
            let Some(variant) = self.names.iter().position(|n| *n == trip.variant) else {
                continue;
            };
            let guarded = self.windows.get(variant).is_some_and(Option::is_some);
            if let Some(slot @ None) = self.in_effect.get_mut(variant)
                && guarded
            {
                *slot = Some(trip.clone());
                changes.push(Change::Followed(variant, trip.clone()));
            }
        }
        changes
    }

    /// A scorer state of `version` is in effect: trips made under an older one are
    /// lifted, and their variants' windows start empty.
    pub fn state_applied(&mut self, version: u64) -> Vec<Change> {
        self.version = version;
        let mut changes = Vec::new();
        for (variant, slot) in self.in_effect.iter_mut().enumerate() {
            if let Some(trip) = slot.take_if(|t| t.state_version < version) {
                if let Some(Some(window)) = self.windows.get_mut(variant) {
                    window.clear();
                }
                changes.push(Change::Lifted(variant, trip));
            }
        }
        changes
    }
}

/// Variant `i` as a bit of a mask (variants are at most 16).
pub fn bit(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u32.checked_shl(i))
        .unwrap_or(0)
}

/// The weights with a guardrail's trips applied: each tripped variant's weight goes to
/// the baseline (the first variant).
pub fn effective_weights(weights_bp: &[u32], tripped: u32) -> Vec<u32> {
    let moved: u32 = weights_bp
        .iter()
        .enumerate()
        .filter(|(i, _)| *i > 0 && tripped & bit(*i) != 0)
        .map(|(_, w)| *w)
        .sum();
    weights_bp
        .iter()
        .enumerate()
        .map(|(i, w)| match i {
            0 => w + moved,
            _ if tripped & bit(i) != 0 => 0,
            _ => *w,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Guardrail {
        Guardrail {
            window_ms: 10_000,
            min_requests: 20,
            max_5xx_share: Some(0.5),
            max_grpc_error_share: Some(0.2),
            max_p99_ms: Some(2_000),
            variants: vec![1],
        }
    }

    fn totals(requests: u64, server_errors: u64, grpc_errors: u64, slow: u64) -> Totals {
        Totals {
            requests,
            server_errors,
            grpc_errors,
            slow,
        }
    }

    #[test]
    fn the_window_slides_bucket_by_bucket() {
        let mut w = Window::new(10_000);
        assert_eq!(w.span_ms(), 10_000);
        for s in 0..10 {
            w.response(100_000 + s * 1_000, s % 2 == 0, false);
        }
        assert_eq!(w.totals(109_999), totals(10, 5, 0, 0));
        assert_eq!(
            w.totals(110_000),
            totals(9, 4, 0, 0),
            "the first second left the window"
        );
        w.response(110_500, false, true);
        assert_eq!(w.totals(110_500), totals(10, 4, 0, 1), "its bucket reused");
        assert_eq!(w.totals(125_000), Totals::default(), "all of it is old");
        w.grpc_error(100_000);
        assert_eq!(
            w.totals(110_500),
            totals(10, 4, 0, 1),
            "a gRPC status for a time before the window is left out"
        );
        w.grpc_error(110_400);
        assert_eq!(w.totals(110_500).grpc_errors, 1);
        w.clear();
        assert_eq!(w.totals(110_500), Totals::default());
    }

    #[test]
    fn the_judgment_waits_for_min_requests_and_names_the_first_limit_broken() {
        let l = limits();
        assert_eq!(judge(&totals(19, 19, 19, 19), &l), None, "too few");
        assert_eq!(judge(&totals(20, 10, 4, 0), &l), None, "at the limits");
        let v = judge(&totals(20, 11, 0, 0), &l).unwrap();
        assert_eq!(
            (v.reason, v.requests, v.offending, v.limit, v.share()),
            (GuardrailReason::ServerErrorShare, 20, 11, 0.5, 0.55)
        );
        assert_eq!(
            judge(&totals(20, 11, 20, 20), &l).unwrap().reason,
            GuardrailReason::ServerErrorShare,
            "5xx first"
        );
        let v = judge(&totals(20, 0, 5, 0), &l).unwrap();
        assert_eq!(
            (v.reason, v.offending, v.limit),
            (GuardrailReason::GrpcErrorShare, 5, 0.2)
        );
        // p99: 1 slow of 100 is the 99th percentile at the limit; 2 of 100 is above.
        assert_eq!(judge(&totals(100, 0, 0, 1), &l), None);
        let v = judge(&totals(100, 0, 0, 2), &l).unwrap();
        assert_eq!(
            (v.reason, v.offending, v.limit),
            (GuardrailReason::P99Latency, 2, 2_000.0)
        );
        assert_eq!(judge(&totals(20, 0, 0, 1), &l).unwrap().offending, 1);
        let zero = Guardrail {
            max_5xx_share: Some(0.0),
            min_requests: 1,
            ..l
        };
        assert!(judge(&totals(1, 0, 0, 0), &zero).is_none());
        assert!(
            judge(&totals(1000, 1, 0, 0), &zero).is_some(),
            "a share of 0 allows none"
        );
    }

    fn guard() -> Guard {
        Guard::new(&limits(), vec!["stable".into(), "canary".into()], 1_000)
    }

    #[test]
    fn a_guard_trips_once_and_only_guarded_variants() {
        let mut g = guard();
        let at = 50_000;
        for i in 0..20 {
            assert_eq!(
                g.response(0, at + i, Some(StatusClass::ServerError), 1),
                None,
                "the baseline is never judged"
            );
        }
        for i in 0..10 {
            assert_eq!(g.response(1, at + i, Some(StatusClass::Success), 5), None);
        }
        for i in 0..10 {
            assert_eq!(
                g.response(1, at + 10 + i, Some(StatusClass::ServerError), 5),
                None
            );
        }
        assert_eq!(g.mask(), 0, "20 requests, 10 errors: at the limit");
        let Some(Change::Tripped(1, trip)) =
            g.response(1, at + 20, Some(StatusClass::ServerError), 5)
        else {
            panic!("the 11th error of 21 trips it");
        };
        assert_eq!(
            (
                trip.variant.as_str(),
                trip.reason,
                trip.requests,
                trip.offending,
                trip.window_ms,
                trip.at_ms,
                trip.state_version
            ),
            (
                "canary",
                GuardrailReason::ServerErrorShare,
                21,
                11,
                10_000,
                at + 20,
                0
            )
        );
        assert_eq!(g.mask(), 0b10);
        assert_eq!(
            g.response(1, at + 21, Some(StatusClass::ServerError), 5),
            None,
            "tripped once"
        );
        assert_eq!(g.grpc_error(1, at + 21), None);
    }

    #[test]
    fn a_trip_is_lifted_by_a_newer_state_only() {
        let mut g = guard();
        assert!(g.state_applied(3).is_empty());
        for i in 0..25 {
            g.response(1, 2_000 + i, None, 0);
        }
        for i in 0..5 {
            g.grpc_error(1, 2_000 + i);
        }
        let Some(Change::Tripped(1, trip)) = g.grpc_error(1, 2_005) else {
            panic!("6 gRPC errors of 25 are above 0.2");
        };
        assert_eq!(
            (trip.reason, trip.state_version),
            (GuardrailReason::GrpcErrorShare, 3)
        );
        assert!(g.state_applied(3).is_empty(), "the same version");
        assert_eq!(g.mask(), 0b10);
        assert_eq!(g.state_applied(4), vec![Change::Lifted(1, trip)]);
        assert_eq!(g.mask(), 0);
        assert_eq!(
            g.response(1, 2_010, None, 0),
            None,
            "the window started again: 1 request"
        );
    }

    #[test]
    fn other_workers_follow_trips_of_this_configuration_and_state() {
        let mut tripper = guard();
        for i in 0..21 {
            tripper.response(1, 5_000 + i, Some(StatusClass::ServerError), 0);
        }
        let trip = match tripper.in_effect[1].clone() {
            Some(t) => t,
            None => panic!("tripped"),
        };
        let mut record = Record::default();
        record.put(trip.clone(), 1_000);

        let mut follower = guard();
        assert_eq!(
            follower.follow(&record),
            vec![Change::Followed(1, trip.clone())]
        );
        assert_eq!(follower.mask(), 0b10);
        assert!(follower.follow(&record).is_empty(), "applied once");

        let mut newer = guard();
        newer.state_applied(1);
        assert!(
            newer.follow(&record).is_empty(),
            "a worker on a newer state does not apply a trip made under an older one"
        );
        let mut reconfigured = Guard::new(&limits(), vec!["stable".into(), "canary".into()], 6_000);
        assert!(
            reconfigured.follow(&record).is_empty(),
            "a new configuration starts fresh"
        );
        let mut renamed = Guard::new(&limits(), vec!["stable".into(), "blue".into()], 1_000);
        assert!(renamed.follow(&record).is_empty());
    }

    #[test]
    fn a_record_keeps_the_latest_trip_of_each_variant() {
        let trip = |variant: &str, at_ms| GuardrailTrip {
            variant: variant.into(),
            reason: GuardrailReason::P99Latency,
            requests: 100,
            offending: 2,
            share: 0.02,
            limit: 2_000.0,
            window_ms: 10_000,
            at_ms,
            state_version: 1,
        };
        let mut r = Record::default();
        r.put(trip("a", 10), 0);
        r.put(trip("b", 20), 0);
        r.put(trip("a", 30), 0);
        let at: Vec<(&str, u64)> = r
            .trips
            .iter()
            .map(|t| (t.variant.as_str(), t.at_ms))
            .collect();
        assert_eq!(at, vec![("b", 20), ("a", 30)]);
        r.put(trip("c", 40), 25);
        assert_eq!(
            r.trips.len(),
            2,
            "b's trip is from an earlier configuration"
        );
        let text = r.encode();
        assert_eq!(
            text,
            "a p99_latency 100 2 409f400000000000 10000 30 1\n\
             c p99_latency 100 2 409f400000000000 10000 40 1\n"
        );
        assert_eq!(Record::decode(text.as_bytes()), r, "round trip");
        let garbage = format!(
            "{text}x 5xx 1 1 0 1 1 1\ny p99_latency 1 1 zz 1 1 1\nz p99_latency 0 0 0 1 1 1\n\
             w p99_latency 1 1 0 1 1 1 extra\nv p99_latency 1 1\n\n"
        );
        assert_eq!(
            Record::decode(garbage.as_bytes()),
            r,
            "lines that are not trips are left out"
        );
        assert_eq!(Record::decode(b"\xff\xfe"), Record::default());
        for i in 0..40 {
            r.put(trip(&format!("v{i}"), 100 + i), 0);
        }
        assert_eq!(r.trips.len(), MAX_TRIPS);
    }

    #[test]
    fn tripped_weight_goes_to_the_baseline() {
        assert_eq!(effective_weights(&[9_000, 1_000], 0), vec![9_000, 1_000]);
        assert_eq!(effective_weights(&[9_000, 1_000], 0b10), vec![10_000, 0]);
        assert_eq!(
            effective_weights(&[5_000, 2_500, 2_500], 0b100),
            vec![7_500, 2_500, 0]
        );
        assert_eq!(bit(15), 1 << 15);
        assert_eq!(bit(40), 0);
    }
}
