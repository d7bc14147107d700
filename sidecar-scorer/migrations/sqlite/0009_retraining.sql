-- Retraining: each model's policy (JSON), and its jobs. A model has at most one job
-- queued or running at a time (the partial unique index); a job's body holds its
-- trigger, command, log and outcome as JSON.
CREATE TABLE retrain_policies (
    model TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE retrain_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    replica TEXT,
    created_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX retrain_jobs_one_active ON retrain_jobs (model)
    WHERE status IN ('queued', 'running');
CREATE INDEX retrain_jobs_model ON retrain_jobs (model, id);
