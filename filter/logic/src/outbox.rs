//! Telemetry batches waiting for the scorer, oldest first. While the scorer is
//! unreachable the outbox keeps the newest batches and drops (and counts) the oldest.
//! A worker makes one batch per flush interval whatever the traffic, so `capacity`
//! batches hold `capacity` flush intervals of outage.

use std::collections::VecDeque;

use outrider_protocol::TelemetryBatch;

/// A batch ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub body: Vec<u8>,
    /// When the batch was made (its window's end).
    pub made_ms: u64,
}

/// Batches waiting for the scorer, oldest first, at most `capacity` of them.
#[derive(Debug)]
pub struct Outbox {
    batches: VecDeque<Pending>,
    capacity: usize,
    dropped: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Queues a batch; when full, the oldest is dropped and counted.
    pub fn push(&mut self, batch: &TelemetryBatch) {
        let Ok(body) = serde_json::to_vec(batch) else {
            self.dropped += 1;
            return;
        };
        if self.batches.len() >= self.capacity {
            self.batches.pop_front();
            self.dropped += 1;
        }
        self.batches.push_back(Pending {
            id: batch.batch_id.clone(),
            body,
            made_ms: batch.window_end_ms,
        });
    }

    /// The batch to send next.
    pub fn next(&self) -> Option<&Pending> {
        self.batches.front()
    }

    /// The scorer took batch `id` (or refused it for good): it leaves the outbox.
    pub fn done(&mut self, id: &str) {
        if self.batches.front().is_some_and(|b| b.id == id) {
            self.batches.pop_front();
        }
    }

    /// When the oldest waiting batch was made.
    pub fn oldest_ms(&self) -> Option<u64> {
        self.batches.front().map(|b| b.made_ms)
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Batches dropped since the worker started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use crate::telemetry::Aggregator;

    use super::*;

    fn aggregator() -> Aggregator {
        Aggregator::new(["stable", "canary"], ["v3"], 2, 1_000)
    }

    #[test]
    fn the_outbox_drops_the_oldest_when_full() {
        let mut a = aggregator();
        let mut out = Outbox::new(2);
        for now in [9, 10, 11] {
            a.request(0);
            out.push(&a.take("fraud", "p", 1, 0, now, false).unwrap());
        }
        assert_eq!((out.len(), out.dropped()), (2, 1));
        assert_eq!(out.oldest_ms(), Some(10));
        assert_eq!(out.next().unwrap().id, "p-0000000000000001-2");
        out.done("something-else");
        assert_eq!(out.len(), 2);
        out.done("p-0000000000000001-2");
        assert_eq!(out.next().unwrap().id, "p-0000000000000001-3");
        let body: TelemetryBatch = serde_json::from_slice(&out.next().unwrap().body).unwrap();
        assert_eq!(body.variants[0].requests, 1);
    }
}
