-- Every alert the scorer raised: firing until its condition cleared, then resolved
-- (ends_ms). body holds the alert (labels, annotations) as JSON.
CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_ms INTEGER NOT NULL,
    rollout TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    ends_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_ms)
);
