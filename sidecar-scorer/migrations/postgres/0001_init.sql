-- Rollouts: the current version of each, as JSON, with its version for
-- compare-and-set updates; and every change as an event.
CREATE TABLE rollouts (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE rollout_events (
    id BIGSERIAL PRIMARY KEY,
    rollout TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    details TEXT NOT NULL,
    UNIQUE (rollout, version)
);

-- Telemetry batches already applied: a batch id is applied once.
CREATE TABLE telemetry_batches (
    batch_id TEXT PRIMARY KEY,
    rollout TEXT NOT NULL,
    proxy TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);

-- Per-window, per-variant sums; every replica adds into the same rows.
-- l00..l22 count latencies per bucket of outrider_protocol::LATENCY_BUCKETS_MS.
CREATE TABLE variant_windows (
    rollout TEXT NOT NULL,
    variant TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    rs_2xx BIGINT NOT NULL DEFAULT 0,
    rs_3xx BIGINT NOT NULL DEFAULT 0,
    rs_4xx BIGINT NOT NULL DEFAULT 0,
    rs_5xx BIGINT NOT NULL DEFAULT 0,
    grpc_errors BIGINT NOT NULL DEFAULT 0,
    latency_sum_ms BIGINT NOT NULL DEFAULT 0,
    l00 BIGINT NOT NULL DEFAULT 0,
    l01 BIGINT NOT NULL DEFAULT 0,
    l02 BIGINT NOT NULL DEFAULT 0,
    l03 BIGINT NOT NULL DEFAULT 0,
    l04 BIGINT NOT NULL DEFAULT 0,
    l05 BIGINT NOT NULL DEFAULT 0,
    l06 BIGINT NOT NULL DEFAULT 0,
    l07 BIGINT NOT NULL DEFAULT 0,
    l08 BIGINT NOT NULL DEFAULT 0,
    l09 BIGINT NOT NULL DEFAULT 0,
    l10 BIGINT NOT NULL DEFAULT 0,
    l11 BIGINT NOT NULL DEFAULT 0,
    l12 BIGINT NOT NULL DEFAULT 0,
    l13 BIGINT NOT NULL DEFAULT 0,
    l14 BIGINT NOT NULL DEFAULT 0,
    l15 BIGINT NOT NULL DEFAULT 0,
    l16 BIGINT NOT NULL DEFAULT 0,
    l17 BIGINT NOT NULL DEFAULT 0,
    l18 BIGINT NOT NULL DEFAULT 0,
    l19 BIGINT NOT NULL DEFAULT 0,
    l20 BIGINT NOT NULL DEFAULT 0,
    l21 BIGINT NOT NULL DEFAULT 0,
    l22 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (rollout, variant, window_start_ms)
);

CREATE TABLE samples (
    id BIGSERIAL PRIMARY KEY,
    rollout TEXT NOT NULL,
    variant TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    request_id TEXT,
    user_key TEXT,
    features TEXT NOT NULL,
    score DOUBLE PRECISION
);
CREATE INDEX samples_request_id ON samples (request_id);
CREATE INDEX samples_user_key ON samples (user_key);

-- Outcome labels, arriving long after the requests they describe.
CREATE TABLE feedback (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT UNIQUE,
    rollout TEXT,
    request_id TEXT,
    user_key TEXT,
    label DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION,
    observed_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX feedback_request_id ON feedback (request_id);
CREATE INDEX feedback_user_key ON feedback (user_key);

-- Leases for the replica that runs rollout decisions when no advisory lock exists.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
