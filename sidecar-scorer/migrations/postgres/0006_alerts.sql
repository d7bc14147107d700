-- Every alert the scorer raised: firing until its condition cleared, then resolved
-- (ends_ms). body holds the alert (labels, annotations) as JSON.
CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_ms BIGINT NOT NULL,
    rollout TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    ends_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_ms)
);
