-- One row per look at an A/B experiment: the cumulative result from the
-- experiment's start (start_ms) to an interval's end (filter clocks), its verdict,
-- and the whole run (every variant's sums, every comparison) as JSON. A run is
-- written once per interval end, whichever replica leads.
CREATE TABLE experiment_runs (
    rollout TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (rollout, end_ms)
);

-- An experiment joins the feedback received since it started to its exposures.
-- Arrival times grow, so this index is appended to, unlike indexes on the random
-- request ids and user keys that 0003 dropped.
CREATE INDEX feedback_received ON feedback (received_ms);
