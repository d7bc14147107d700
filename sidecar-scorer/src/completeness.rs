//! Which telemetry windows are complete: every reporting worker that is still around
//! has sent everything it saw up to the window's end. A window that is not complete
//! may still grow (a worker's backlog after a scorer outage, a batch on its way), so
//! judging it would read an outage as a traffic drop or an error spike.
//!
//! A worker is live while it was heard from within the worker timeout; the scorer's
//! own start counts as hearing from everyone, so a restarted scorer waits for the
//! workers it knew before it ends their windows. A worker not heard from for longer is
//! forgotten: windows stop waiting for it.

use serde::Serialize;

use crate::store::WorkerMark;

/// One worker as the telemetry summary shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    pub proxy: String,
    pub worker: String,
    pub complete_through_ms: u64,
    pub last_seen_ms: u64,
    /// Heard from within the timeout: windows wait for it.
    pub live: bool,
}

/// How far a rollout's telemetry is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Completeness {
    /// Every window that ends at or before this time is complete.
    pub complete_through_ms: u64,
    pub workers: Vec<WorkerStatus>,
}

impl Completeness {
    /// Whether the window `[start, start + length)` is complete.
    pub fn window_complete(&self, start_ms: u64, length_ms: u64) -> bool {
        start_ms.saturating_add(length_ms) <= self.complete_through_ms
    }
}

/// Completeness from the workers' marks. With no live worker, nothing more is on its
/// way from anyone known, so everything up to `now_ms` is complete.
pub fn completeness(
    marks: &[WorkerMark],
    now_ms: u64,
    started_ms: u64,
    timeout_ms: u64,
) -> Completeness {
    let workers: Vec<WorkerStatus> = marks
        .iter()
        .map(|m| WorkerStatus {
            proxy: m.proxy.clone(),
            worker: m.worker.clone(),
            complete_through_ms: m.complete_through_ms,
            last_seen_ms: m.last_seen_ms,
            live: now_ms.saturating_sub(m.last_seen_ms.max(started_ms)) < timeout_ms,
        })
        .collect();
    let complete_through_ms = workers
        .iter()
        .filter(|w| w.live)
        .map(|w| w.complete_through_ms)
        .min()
        .unwrap_or(now_ms);
    Completeness {
        complete_through_ms,
        workers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(worker: &str, through: u64, seen: u64) -> WorkerMark {
        WorkerMark {
            proxy: "envoy-1".into(),
            worker: worker.into(),
            complete_through_ms: through,
            last_seen_ms: seen,
        }
    }

    #[test]
    fn the_slowest_live_worker_decides() {
        let marks = [mark("a", 20_000, 20_100), mark("b", 14_000, 20_050)];
        let c = completeness(&marks, 20_200, 0, 30_000);
        assert_eq!(c.complete_through_ms, 14_000);
        assert!(c.window_complete(0, 10_000));
        assert!(
            !c.window_complete(10_000, 10_000),
            "b has not sent past 14 s"
        );
    }

    #[test]
    fn a_worker_gone_for_the_timeout_is_forgotten() {
        let marks = [mark("a", 60_000, 60_100), mark("gone", 14_000, 20_000)];
        let c = completeness(&marks, 60_200, 0, 30_000);
        assert_eq!(c.complete_through_ms, 60_000);
        assert_eq!(
            c.workers.iter().map(|w| w.live).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn a_restarted_scorer_waits_for_the_workers_it_knew() {
        // The scorer was down from 20 s to 70 s: both workers are silent since 20 s,
        // yet they are live until the timeout after the restart.
        let marks = [mark("a", 20_000, 20_000), mark("b", 19_000, 20_000)];
        let c = completeness(&marks, 71_000, 70_000, 30_000);
        assert_eq!(c.complete_through_ms, 19_000);
        let later = completeness(&marks, 100_000, 70_000, 30_000);
        assert_eq!(later.complete_through_ms, 100_000, "forgotten at last");
    }

    #[test]
    fn without_workers_everything_until_now_is_complete() {
        let c = completeness(&[], 5_000, 0, 30_000);
        assert!(c.window_complete(0, 5_000));
        assert!(!c.window_complete(0, 5_001));
    }
}
