-- Model monitoring. Each judged window of a model version's samples, once per window
-- end (a time in ms, or a sample id for windows by count), whichever replica leads;
-- body holds the whole report (per-feature statistics and verdicts, the dataset
-- verdict, the estimated performance, the findings after it) as JSON.
CREATE TABLE drift_windows (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    end_key INTEGER NOT NULL,
    start_key INTEGER NOT NULL,
    judged_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (model, version, end_key)
);

-- Findings raised and cleared, in order: what a retraining policy follows.
CREATE TABLE model_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);

-- The latest realised performance of each version on its labelled window.
CREATE TABLE model_performance (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    evaluated_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (model, version)
);

-- Outcome labels joined to the samples they describe. Feedback is read in arrival
-- order (monitor_cursors remembers how far) and matched through the samples'
-- indexes, so feedback keeps no index of its own.
CREATE TABLE sample_labels (
    sample_id INTEGER PRIMARY KEY,
    label REAL NOT NULL,
    observed_ms INTEGER NOT NULL
);

CREATE TABLE monitor_cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
