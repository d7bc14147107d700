-- How far each reporting filter worker's telemetry is complete. A worker sends its
-- batches in order, so once a batch is applied everything it saw up to the batch's
-- end is in (complete_through_ms, the filter's clock). last_seen_ms (the scorer's
-- clock) tells a worker that went away from one that is only behind.
CREATE TABLE telemetry_workers (
    rollout TEXT NOT NULL,
    proxy TEXT NOT NULL,
    worker TEXT NOT NULL,
    complete_through_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (rollout, proxy, worker)
);
