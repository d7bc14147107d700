//! Tumbling and sliding windows over mergeable state.
//!
//! Time is whatever monotone unit the caller uses (milliseconds of event
//! time in the scorer). A sliding window is a ring of panes of width `slide`;
//! its state is the merge of the last `width / slide` panes, so an
//! observation is recorded once and a pane expires as a whole.

use super::Mergeable;
use crate::InputError;
use std::collections::VecDeque;

/// A closed window: its start and its final state.
pub type ClosedWindow<S> = (u64, S);

/// Consecutive, non-overlapping windows `[k·width, (k+1)·width)`.
#[derive(Debug, Clone)]
pub struct Tumbling<S> {
    width: u64,
    start: Option<u64>,
    current: S,
    empty: S,
}

impl<S: Clone + Mergeable> Tumbling<S> {
    /// `empty` is the state of a window without observations; `width > 0`.
    pub fn new(width: u64, empty: S) -> Result<Self, InputError> {
        if width == 0 {
            return Err(InputError::invalid("width", "must be positive"));
        }
        Ok(Self {
            width,
            start: None,
            current: empty.clone(),
            empty,
        })
    }

    /// The state of the window containing `time`, closing the current window
    /// first (returned with its start) if `time` lies past it. Times before
    /// the current window belong to a closed window and are rejected.
    pub fn at(&mut self, time: u64) -> Result<(Option<ClosedWindow<S>>, &mut S), InputError> {
        let start = time - time % self.width;
        let closed = match self.start {
            Some(s) if start < s => {
                return Err(InputError::invalid(
                    "time",
                    "falls in a window that is already closed",
                ));
            }
            Some(s) if start > s => {
                Some((s, std::mem::replace(&mut self.current, self.empty.clone())))
            }
            _ => None,
        };
        self.start = Some(start);
        Ok((closed, &mut self.current))
    }

    /// Start and state of the open window.
    pub fn current(&self) -> Option<(u64, &S)> {
        self.start.map(|s| (s, &self.current))
    }
}

/// Windows of `width` that advance by `slide` (`width` a multiple of `slide`).
#[derive(Debug, Clone)]
pub struct Sliding<S> {
    slide: u64,
    panes_per_window: usize,
    panes: VecDeque<(u64, S)>,
    empty: S,
}

impl<S: Clone + Mergeable> Sliding<S> {
    pub fn new(width: u64, slide: u64, empty: S) -> Result<Self, InputError> {
        if slide == 0 {
            return Err(InputError::invalid("slide", "must be positive"));
        }
        if width == 0 || !width.is_multiple_of(slide) {
            return Err(InputError::invalid(
                "width",
                "must be a positive multiple of slide",
            ));
        }
        Ok(Self {
            slide,
            panes_per_window: (width / slide) as usize,
            panes: VecDeque::new(),
            empty,
        })
    }

    /// The pane that records observations at `time`; panes that fell out of
    /// the window ending at `time` are dropped.
    pub fn pane_at(&mut self, time: u64) -> Result<&mut S, InputError> {
        let start = time - time % self.slide;
        if let Some((last, _)) = self.panes.back()
            && start < *last
        {
            return Err(InputError::invalid("time", "is older than the newest pane"));
        }
        if self.panes.back().is_none_or(|(last, _)| *last != start) {
            self.panes.push_back((start, self.empty.clone()));
        }
        let oldest_kept = start.saturating_sub((self.panes_per_window as u64 - 1) * self.slide);
        while self.panes.front().is_some_and(|(s, _)| *s < oldest_kept) {
            self.panes.pop_front();
        }
        Ok(&mut self.panes.back_mut().expect("pane just ensured").1)
    }

    /// The merged state of the window that ends with the newest pane.
    pub fn window(&self) -> Result<S, InputError> {
        let mut out = self.empty.clone();
        for (_, pane) in &self.panes {
            out.merge(pane)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::ab::Moments;

    #[test]
    fn tumbling_closes_windows_in_order() {
        let mut w = Tumbling::new(10, Moments::default()).unwrap();
        w.at(3).unwrap().1.observe(1.0);
        w.at(9).unwrap().1.observe(2.0);
        let (closed, current) = w.at(12).unwrap();
        current.observe(5.0);
        let (start, state) = closed.unwrap();
        assert_eq!((start, state.n, state.sum), (0, 2, 3.0));
        assert!(w.at(4).is_err());
        assert_eq!(w.current().unwrap().1.n, 1);
    }

    #[test]
    fn sliding_keeps_the_last_panes() {
        let mut w = Sliding::new(30, 10, Moments::default()).unwrap();
        for t in [0u64, 5, 15, 25, 35] {
            w.pane_at(t).unwrap().observe(t as f64);
        }
        // Window ending with pane [30, 40) covers panes 10, 20, 30.
        let s = w.window().unwrap();
        assert_eq!((s.n, s.sum), (3, 15.0 + 25.0 + 35.0));
        assert!(Sliding::new(25, 10, Moments::default()).is_err());
    }
}
