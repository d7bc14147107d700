//! What one configuration keeps on one worker, shared by the requests it assigns (the
//! VM is single-threaded): randomness, the recorder, the shadow desk.

use std::cell::RefCell;
use std::rc::Rc;

use crate::assignment::RandomPoints;
use crate::config::Rollout;
use crate::desk::{Desk, Event};
use crate::host::Host;
use crate::recorder::Recorder;

pub struct Worker {
    pub random: RandomPoints,
    recorder: RefCell<Recorder>,
    desk: RefCell<Desk>,
}

impl Worker {
    pub fn new(
        host: &impl Host,
        rollout: &Rollout,
        seed: u64,
        now_ms: u64,
    ) -> Result<Self, String> {
        Ok(Self {
            random: RandomPoints::new(seed),
            recorder: RefCell::new(Recorder::define(host, rollout, now_ms)?),
            desk: RefCell::new(Desk::new(rollout.shadows.len())),
        })
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

/// The rollout in effect, with the worker state of its configuration. A new state from
/// the scorer replaces the rollout and keeps the worker; requests in flight keep the
/// `Active` they started with.
pub struct Active {
    pub rollout: Rollout,
    pub worker: Rc<Worker>,
}
