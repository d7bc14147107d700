-- One row per analysis run of a rollout: the interval it judged (filter clocks), the
-- step, the outcome, and the whole run (figures of every check) as JSON. A run is
-- written once per interval end, whichever replica leads.
CREATE TABLE analysis_runs (
    rollout TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    step INTEGER NOT NULL, -- -1 without a step
    outcome TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (rollout, end_ms)
);

-- An analysis run reads the scores sampled in its interval.
CREATE INDEX samples_rollout_at ON samples (rollout, at_ms);
