-- Rollouts: the current version of each, as JSON, with its version for
-- compare-and-set updates; and every change as an event.
CREATE TABLE rollouts (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE rollout_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    details TEXT NOT NULL,
    UNIQUE (rollout, version)
);

-- Telemetry batches already applied: a batch id is applied once.
CREATE TABLE telemetry_batches (
    batch_id TEXT PRIMARY KEY,
    rollout TEXT NOT NULL,
    proxy TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);

-- Per-window, per-variant sums; every replica adds into the same rows.
-- l00..l22 count latencies per bucket of outrider_protocol::LATENCY_BUCKETS_MS.
CREATE TABLE variant_windows (
    rollout TEXT NOT NULL,
    variant TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    rs_2xx INTEGER NOT NULL DEFAULT 0,
    rs_3xx INTEGER NOT NULL DEFAULT 0,
    rs_4xx INTEGER NOT NULL DEFAULT 0,
    rs_5xx INTEGER NOT NULL DEFAULT 0,
    grpc_errors INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms INTEGER NOT NULL DEFAULT 0,
    l00 INTEGER NOT NULL DEFAULT 0,
    l01 INTEGER NOT NULL DEFAULT 0,
    l02 INTEGER NOT NULL DEFAULT 0,
    l03 INTEGER NOT NULL DEFAULT 0,
    l04 INTEGER NOT NULL DEFAULT 0,
    l05 INTEGER NOT NULL DEFAULT 0,
    l06 INTEGER NOT NULL DEFAULT 0,
    l07 INTEGER NOT NULL DEFAULT 0,
    l08 INTEGER NOT NULL DEFAULT 0,
    l09 INTEGER NOT NULL DEFAULT 0,
    l10 INTEGER NOT NULL DEFAULT 0,
    l11 INTEGER NOT NULL DEFAULT 0,
    l12 INTEGER NOT NULL DEFAULT 0,
    l13 INTEGER NOT NULL DEFAULT 0,
    l14 INTEGER NOT NULL DEFAULT 0,
    l15 INTEGER NOT NULL DEFAULT 0,
    l16 INTEGER NOT NULL DEFAULT 0,
    l17 INTEGER NOT NULL DEFAULT 0,
    l18 INTEGER NOT NULL DEFAULT 0,
    l19 INTEGER NOT NULL DEFAULT 0,
    l20 INTEGER NOT NULL DEFAULT 0,
    l21 INTEGER NOT NULL DEFAULT 0,
    l22 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rollout, variant, window_start_ms)
);

CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT NOT NULL,
    variant TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    request_id TEXT,
    user_key TEXT,
    features TEXT NOT NULL,
    score REAL
);
CREATE INDEX samples_request_id ON samples (request_id);
CREATE INDEX samples_user_key ON samples (user_key);

-- Outcome labels, arriving long after the requests they describe.
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    rollout TEXT,
    request_id TEXT,
    user_key TEXT,
    label REAL NOT NULL,
    value REAL,
    observed_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX feedback_request_id ON feedback (request_id);
CREATE INDEX feedback_user_key ON feedback (user_key);

-- Leases for the replica that runs rollout decisions when no advisory lock exists.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
