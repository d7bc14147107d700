-- Feedback is an append-only log, read in arrival order and joined to samples
-- through the samples' indexes. Indexes on its request ids and user keys (random
-- keys) cost several scattered page writes per event and cut ingestion to a
-- fifth; nothing looks feedback up by them.
DROP INDEX feedback_request_id;
DROP INDEX feedback_user_key;
