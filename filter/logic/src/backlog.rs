//! The telemetry backlog of an Envoy: batches its workers hold for the scorer, and the
//! age of the oldest. Each worker keeps its own outbox, so each writes its figures into
//! one shared-data record per rollout (`worker -> [pending, oldest_ms, reported_ms]`)
//! and sets the Envoy's gauges from the whole record. A worker that stops reporting (a
//! replaced configuration) is left out once its entry is [`STALE_MS`] old.

use std::collections::BTreeMap;

use crate::host::Host;
use crate::stats::LinkStats;

/// How often a worker looks at the record and sets the gauges.
pub const REPORT_MS: u64 = 250;
/// A worker with a backlog rewrites its entry this often, even when it has not changed.
pub const REFRESH_MS: u64 = 1_000;
/// An entry older than this belongs to a worker that is gone.
pub const STALE_MS: u64 = 5_000;

/// Per worker: pending batches, when the oldest was made, when the entry was written.
pub type Record = BTreeMap<String, [u64; 3]>;

/// One worker's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub pending: u64,
    pub oldest_ms: Option<u64>,
}

/// Puts this worker's figures into the record and drops stale entries; true if the
/// record changed and must be written back.
pub fn update(record: &mut Record, worker: &str, figures: Figures, now_ms: u64) -> bool {
    let before = record.len();
    record.retain(|w, e| w == worker || e[2] + STALE_MS > now_ms);
    let mut changed = record.len() != before;
    match figures.oldest_ms {
        Some(oldest) if figures.pending > 0 => {
            let fresh = record.get(worker).is_some_and(|e| {
                e[0] == figures.pending && e[1] == oldest && e[2] + REFRESH_MS > now_ms
            });
            if !fresh {
                record.insert(worker.to_owned(), [figures.pending, oldest, now_ms]);
                changed = true;
            }
        }
        _ => changed |= record.remove(worker).is_some(),
    }
    changed
}

/// The Envoy's figures: pending batches of every live worker, and the age of the
/// oldest of them (0 when none is pending).
pub fn totals(record: &Record, now_ms: u64) -> (u64, u64) {
    record
        .values()
        .filter(|e| e[2] + STALE_MS > now_ms)
        .fold((0, 0), |(pending, age), e| {
            (pending + e[0], age.max(now_ms.saturating_sub(e[1])))
        })
}

/// This worker's part in the shared record.
#[derive(Debug)]
pub struct Backlog {
    key: String,
    worker: String,
    next_ms: u64,
}

impl Backlog {
    pub fn new(rollout: &str, worker: u64) -> Self {
        Self {
            key: format!("outrider/{rollout}/backlog"),
            worker: format!("{worker:016x}"),
            next_ms: 0,
        }
    }

    /// At most every [`REPORT_MS`]: writes this worker's figures if they changed (a
    /// lost compare-and-swap is retried at the next report) and sets the gauges.
    pub fn report(&mut self, host: &impl Host, now_ms: u64, figures: Figures, stats: &LinkStats) {
        if now_ms < self.next_ms {
            return;
        }
        self.next_ms = now_ms + REPORT_MS;
        let (value, cas) = host.shared_get(&self.key);
        let mut record: Record = value
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if update(&mut record, &self.worker, figures, now_ms)
            && let Ok(bytes) = serde_json::to_vec(&record)
        {
            host.shared_set(&self.key, &bytes, cas);
        }
        let (pending, age) = totals(&record, now_ms);
        stats.backlog(host, pending, age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pending: u64, oldest_ms: u64) -> Figures {
        Figures {
            pending,
            oldest_ms: Some(oldest_ms),
        }
    }

    const NONE: Figures = Figures {
        pending: 0,
        oldest_ms: None,
    };

    #[test]
    fn workers_add_up_and_the_oldest_batch_sets_the_age() {
        let mut r = Record::new();
        assert!(update(&mut r, "a", figures(3, 1_000), 2_000));
        assert!(update(&mut r, "b", figures(2, 1_500), 2_000));
        assert_eq!(totals(&r, 2_500), (5, 1_500));
        assert!(
            !update(&mut r, "a", figures(3, 1_000), 2_200),
            "unchanged figures are not written again"
        );
        assert!(
            update(&mut r, "a", figures(3, 1_000), 3_000),
            "but refreshed every second"
        );
        assert!(update(&mut r, "b", NONE, 3_000), "an empty outbox leaves");
        assert_eq!(totals(&r, 3_000), (3, 2_000));
        assert!(update(&mut r, "a", NONE, 3_100));
        assert_eq!(totals(&r, 3_100), (0, 0));
        assert!(!update(&mut r, "a", NONE, 3_200));
    }

    #[test]
    fn a_worker_that_stopped_reporting_is_left_out() {
        let mut r = Record::new();
        update(&mut r, "gone", figures(7, 0), 1_000);
        update(&mut r, "live", figures(1, 5_000), 5_500);
        assert_eq!(totals(&r, 5_900), (8, 5_900));
        assert_eq!(totals(&r, 6_000), (1, 1_000), "stale after five seconds");
        assert!(update(&mut r, "live", figures(1, 5_000), 6_000));
        assert!(!r.contains_key("gone"), "and dropped at the next write");
    }
}
