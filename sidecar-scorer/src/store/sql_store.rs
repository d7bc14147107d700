//! [`Store`] over a SQL database. Every query is written once, here, for any sqlx
//! database; a [`Dialect`] brings only what differs between SQLite and PostgreSQL: how
//! generated statements spell their parameters, and how a replica takes the decision
//! lock.

use std::future::Future;

use async_trait::async_trait;
use outrider_protocol::{
    BatchOutcome, ClassCounts, LATENCY_SLOTS, Sample, ShadowCounts, TelemetryBatch,
};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row,
    Transaction, Type,
};

use super::sql::{
    COUNT_FEEDBACK, COUNT_FEEDBACK_ROLLOUT, COUNT_SAMPLES, FEEDBACK_MARGIN_MS, INSERT_BATCH,
    INSERT_CHUNK, INSERT_DRIFT_WINDOW, INSERT_EVENT, INSERT_EXPERIMENT_RUN, INSERT_MODEL_EVENT,
    INSERT_ROLLOUT, INSERT_RUN, Placeholders, SELECT_ALERTS, SELECT_CURSOR, SELECT_DRIFT_WINDOWS,
    SELECT_EVENTS, SELECT_EXPERIMENT_RUNS, SELECT_FEEDBACK_AFTER, SELECT_FIRING,
    SELECT_LABELLED_IDS, SELECT_LABELLED_TIME, SELECT_LAST_EVENT, SELECT_LATEST_DRIFT_WINDOWS,
    SELECT_MODEL_EVENTS, SELECT_MODEL_VERSIONS, SELECT_MONITORED_AFTER, SELECT_MONITORED_THROUGH,
    SELECT_MONITORED_TIME, SELECT_NEXT_SAMPLE_MS, SELECT_REALISED, SELECT_ROLLOUT, SELECT_ROLLOUTS,
    SELECT_RUNS, SELECT_SAMPLES, SELECT_SAMPLES_BY_REQUEST, SELECT_SAMPLES_BY_USER, SELECT_SCORES,
    SELECT_WORKERS, UPDATE_ROLLOUT, UPSERT_ALERT, UPSERT_CURSOR, UPSERT_LABEL, UPSERT_REALISED,
    UPSERT_WORKER, by_variant, db_int, from_db_int, insert_feedback, insert_samples,
    select_exposure_sums, select_shadows, select_windows, shadow_columns, shadow_from_values,
    shadow_values, upsert_shadow, upsert_windows,
};
use super::{
    ExposureSums, FeedbackEvent, FeedbackOutcome, LabelRound, SampleRange, Store, StoreError,
    StoreResult, StoredAlert, WindowCounts, WorkerMark,
};
use crate::analysis::Run;
use crate::experiment::{ExperimentRun, Unit};
use crate::monitor::findings::ModelEvent;
use crate::monitor::judge::{MonitoredSample, WindowReport};
use crate::monitor::realised::{Labelled, RealisedPerformance};
use crate::rollout::{Event, Rollout};

/// What one SQL database does its own way.
pub trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;

    /// The backend's name in `/readyz` and logs: `sqlite` or `postgres`.
    const NAME: &'static str;

    /// How generated multi-row statements spell their parameters.
    const PLACEHOLDERS: Placeholders;

    /// Rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Tries to become (or stay) the replica that runs rollout decisions.
    fn try_lead(
        &self,
        write: &Pool<Self::Db>,
        holder: &str,
        now_ms: u64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Gives leadership up, so another replica takes over at once.
    fn release_lead(
        &self,
        write: &Pool<Self::Db>,
        holder: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A store on a SQL database: writes through one pool, reads through another (the
/// same pool where the database has no single-writer rule).
pub struct SqlStore<D: Dialect> {
    pub(super) write: Pool<D::Db>,
    pub(super) read: Pool<D::Db>,
    dialect: D,
}

impl<D: Dialect> SqlStore<D> {
    /// A store over pools whose schema is up to date.
    pub(super) fn new(write: Pool<D::Db>, read: Pool<D::Db>, dialect: D) -> Self {
        Self {
            write,
            read,
            dialect,
        }
    }
}

/// A rollout that does not go to or come back from its stored JSON.
fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

// What the queries below need of a sqlx database: to run statements on a connection
// and a pool, and to bind and read the column types of the schema. SQLite and
// PostgreSQL have all of it. (The same bounds are on the `Store` impl below: Rust
// does not carry where-clauses from one impl to another.)
impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q, 'a> &'a str: Encode<'q, D::Db>,
    str: Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db>,
{
    fn event_from_row(row: &<D::Db as Database>::Row) -> Result<Event, sqlx::Error> {
        let details: String = row.try_get("details")?;
        Ok(Event {
            rollout: row.try_get("rollout")?,
            version: from_db_int(row.try_get("version")?),
            kind: row.try_get("kind")?,
            actor: row.try_get("actor")?,
            reason: row.try_get("reason")?,
            at_ms: from_db_int(row.try_get("at_ms")?),
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        })
    }

    async fn insert_event(tx: &mut Transaction<'static, D::Db>, event: &Event) -> StoreResult<()> {
        sqlx::query::<D::Db>(INSERT_EVENT)
            .bind(&event.rollout)
            .bind(db_int(event.version))
            .bind(&event.kind)
            .bind(&event.actor)
            .bind(&event.reason)
            .bind(db_int(event.at_ms))
            .bind(event.details.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Adds a batch's per-variant counts into `window`, one row per variant.
    async fn upsert_windows(
        tx: &mut Transaction<'static, D::Db>,
        batch: &TelemetryBatch,
        window: u64,
    ) -> StoreResult<()> {
        let rows = by_variant(&batch.variants);
        if rows.is_empty() {
            return Ok(());
        }
        // Built from placeholders only; values are bound.
        let sql = upsert_windows(D::PLACEHOLDERS, rows.len());
        let mut query = sqlx::query::<D::Db>(AssertSqlSafe(sql));
        for v in &rows {
            query = query
                .bind(&batch.rollout)
                .bind(&v.variant)
                .bind(db_int(window))
                .bind(db_int(v.requests))
                .bind(db_int(v.responses.success))
                .bind(db_int(v.responses.redirect))
                .bind(db_int(v.responses.client_error))
                .bind(db_int(v.responses.server_error))
                .bind(db_int(v.grpc_errors))
                .bind(db_int(v.latency_sum_ms));
            for slot in 0..LATENCY_SLOTS {
                query = query.bind(db_int(v.latency_ms.get(slot).copied().unwrap_or(0)));
            }
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Adds each shadow's counts into `window`.
    async fn upsert_shadows(
        tx: &mut Transaction<'static, D::Db>,
        batch: &TelemetryBatch,
        window: u64,
    ) -> StoreResult<()> {
        for shadow in &batch.shadows {
            let mut query = sqlx::query::<D::Db>(upsert_shadow())
                .bind(&batch.rollout)
                .bind(&shadow.variant)
                .bind(db_int(window));
            for value in shadow_values(shadow) {
                query = query.bind(value);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_model_events(
        tx: &mut Transaction<'static, D::Db>,
        events: &[ModelEvent],
    ) -> StoreResult<()> {
        for event in events {
            let body = serde_json::to_string(event).map_err(json_error)?;
            sqlx::query::<D::Db>(INSERT_MODEL_EVENT)
                .bind(&event.model)
                .bind(db_int(event.version))
                .bind(event.kind.to_string())
                .bind(db_int(event.at_ms))
                .bind(body)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Inserts a batch's samples, a chunk of rows per statement.
    async fn insert_samples(
        tx: &mut Transaction<'static, D::Db>,
        batch: &TelemetryBatch,
    ) -> StoreResult<()> {
        for chunk in batch.samples.chunks(INSERT_CHUNK) {
            // Built from placeholders only; values are bound.
            let sql = insert_samples(D::PLACEHOLDERS, chunk.len());
            let mut query = sqlx::query::<D::Db>(AssertSqlSafe(sql));
            for s in chunk {
                query = query
                    .bind(&batch.rollout)
                    .bind(&s.variant)
                    .bind(db_int(s.at_ms))
                    .bind(&s.request_id)
                    .bind(&s.user_key)
                    .bind(serde_json::to_string(&s.features).unwrap_or_default())
                    .bind(s.score);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<D> Store for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q, 'a> &'a str: Encode<'q, D::Db>,
    str: Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db>,
{
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query::<D::Db>("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn create_rollout(&self, rollout: &Rollout, event: &Event) -> StoreResult<()> {
        let body = serde_json::to_string(rollout).map_err(json_error)?;
        let mut tx = self.write.begin().await?;
        let result = sqlx::query::<D::Db>(INSERT_ROLLOUT)
            .bind(&rollout.name)
            .bind(db_int(rollout.version))
            .bind(body)
            .bind(db_int(rollout.updated_ms))
            .execute(&mut *tx)
            .await?;
        if D::rows_affected(&result) == 0 {
            return Err(StoreError::Conflict(format!(
                "a rollout named `{}` exists",
                rollout.name
            )));
        }
        Self::insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_rollout(
        &self,
        rollout: &Rollout,
        expected_version: u64,
        event: &Event,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(rollout).map_err(json_error)?;
        let mut tx = self.write.begin().await?;
        let result = sqlx::query::<D::Db>(UPDATE_ROLLOUT)
            .bind(db_int(rollout.version))
            .bind(body)
            .bind(db_int(rollout.updated_ms))
            .bind(&rollout.name)
            .bind(db_int(expected_version))
            .execute(&mut *tx)
            .await?;
        if D::rows_affected(&result) == 0 {
            return Err(StoreError::Conflict(format!(
                "`{}` changed meanwhile (expected version {expected_version}); read it again",
                rollout.name
            )));
        }
        Self::insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rollout(&self, name: &str) -> StoreResult<Option<Rollout>> {
        let body: Option<String> = sqlx::query_scalar::<D::Db, String>(SELECT_ROLLOUT)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|e| {
                StoreError::Unavailable(format!("stored rollout `{name}` unreadable: {e}"))
            })
        })
        .transpose()
    }

    async fn rollouts(&self) -> StoreResult<Vec<Rollout>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_ROLLOUTS)
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn events(&self, name: &str) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query::<D::Db>(SELECT_EVENTS)
            .bind(name)
            .fetch_all(&self.read)
            .await?;
        let events = rows
            .iter()
            .map(Self::event_from_row)
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(events)
    }

    async fn last_event(&self, name: &str) -> StoreResult<Option<Event>> {
        let row = sqlx::query::<D::Db>(SELECT_LAST_EVENT)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(Self::event_from_row).transpose()?)
    }

    async fn ingest(
        &self,
        batch: &TelemetryBatch,
        window_ms: u64,
        received_ms: u64,
    ) -> StoreResult<BatchOutcome> {
        let mut tx = self.write.begin().await?;
        let empty =
            batch.variants.is_empty() && batch.shadows.is_empty() && batch.samples.is_empty();
        // An empty batch changes no count, so it needs no id kept to apply it once.
        let outcome = if empty {
            BatchOutcome::Applied
        } else {
            let result = sqlx::query::<D::Db>(INSERT_BATCH)
                .bind(&batch.batch_id)
                .bind(&batch.rollout)
                .bind(&batch.proxy)
                .bind(db_int(received_ms))
                .execute(&mut *tx)
                .await?;
            if D::rows_affected(&result) == 0 {
                BatchOutcome::Duplicate
            } else {
                let window = batch.window_end_ms - batch.window_end_ms % window_ms.max(1);
                Self::upsert_windows(&mut tx, batch, window).await?;
                Self::upsert_shadows(&mut tx, batch, window).await?;
                Self::insert_samples(&mut tx, batch).await?;
                BatchOutcome::Applied
            }
        };
        if let Some(worker) = &batch.worker {
            sqlx::query::<D::Db>(UPSERT_WORKER)
                .bind(&batch.rollout)
                .bind(&batch.proxy)
                .bind(worker)
                .bind(db_int(batch.window_end_ms))
                .bind(db_int(received_ms))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn put_alert(&self, alert: &StoredAlert) -> StoreResult<()> {
        let body = serde_json::to_string(alert).map_err(json_error)?;
        let label = |k: &str| alert.labels.get(k).cloned().unwrap_or_default();
        sqlx::query::<D::Db>(UPSERT_ALERT)
            .bind(&alert.fingerprint)
            .bind(db_int(alert.starts_ms))
            .bind(label("rollout"))
            .bind(label("alertname"))
            .bind(&alert.status)
            .bind(db_int(alert.ends_ms.unwrap_or(0)))
            .bind(body)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn alerts(&self, limit: u64, firing_only: bool) -> StoreResult<Vec<StoredAlert>> {
        let query = if firing_only {
            sqlx::query_scalar::<D::Db, String>(SELECT_FIRING)
        } else {
            sqlx::query_scalar::<D::Db, String>(SELECT_ALERTS).bind(db_int(limit))
        };
        let bodies: Vec<String> = query.fetch_all(&self.read).await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn add_run(&self, run: &Run) -> StoreResult<bool> {
        let body = serde_json::to_string(run).map_err(json_error)?;
        let outcome = serde_json::to_value(run.outcome).map_err(json_error)?;
        let result = sqlx::query::<D::Db>(INSERT_RUN)
            .bind(&run.rollout)
            .bind(db_int(run.end_ms))
            .bind(db_int(run.start_ms))
            .bind(run.step.map_or(-1, |s| db_int(s as u64)))
            .bind(outcome.as_str().unwrap_or("inconclusive").to_owned())
            .bind(body)
            .execute(&self.write)
            .await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn runs(&self, rollout: &str, limit: u64) -> StoreResult<Vec<Run>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_RUNS)
            .bind(rollout)
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn exposure_sums(
        &self,
        rollout: &str,
        unit: Unit,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<ExposureSums>> {
        let rows = sqlx::query::<D::Db>(select_exposure_sums(unit))
            .bind(rollout)
            .bind(db_int(from_ms))
            .bind(db_int(to_ms))
            .bind(db_int(from_ms.saturating_sub(FEEDBACK_MARGIN_MS)))
            .fetch_all(&self.read)
            .await?;
        let sums = rows
            .iter()
            .map(|row| {
                Ok(ExposureSums {
                    variant: row.try_get("variant")?,
                    exposures: from_db_int(row.try_get("exposures")?),
                    conversions: from_db_int(row.try_get("conversions")?),
                    value_sum: row.try_get("value_sum")?,
                    value_sum_sq: row.try_get("value_sum_sq")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(sums)
    }

    async fn add_experiment_run(&self, run: &ExperimentRun) -> StoreResult<bool> {
        let body = serde_json::to_string(run).map_err(json_error)?;
        let result = sqlx::query::<D::Db>(INSERT_EXPERIMENT_RUN)
            .bind(&run.rollout)
            .bind(db_int(run.end_ms))
            .bind(db_int(run.start_ms))
            .bind(run.verdict.as_str())
            .bind(body)
            .execute(&self.write)
            .await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn experiment_runs(&self, rollout: &str, limit: u64) -> StoreResult<Vec<ExperimentRun>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_EXPERIMENT_RUNS)
            .bind(rollout)
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn scores(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<(String, f64)>> {
        let rows = sqlx::query::<D::Db>(SELECT_SCORES)
            .bind(rollout)
            .bind(db_int(from_ms))
            .bind(db_int(to_ms))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("variant")?, row.try_get("score")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn workers(&self, rollout: &str) -> StoreResult<Vec<WorkerMark>> {
        let rows = sqlx::query::<D::Db>(SELECT_WORKERS)
            .bind(rollout)
            .fetch_all(&self.read)
            .await?;
        let marks = rows
            .iter()
            .map(|row| {
                Ok(WorkerMark {
                    proxy: row.try_get("proxy")?,
                    worker: row.try_get("worker")?,
                    complete_through_ms: from_db_int(row.try_get("complete_through_ms")?),
                    last_seen_ms: from_db_int(row.try_get("last_seen_ms")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(marks)
    }

    async fn windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<WindowCounts>> {
        let rows = sqlx::query::<D::Db>(select_windows())
            .bind(rollout)
            .bind(db_int(from_ms))
            .bind(db_int(to_ms))
            .fetch_all(&self.read)
            .await?;
        let windows = rows
            .iter()
            .map(|row| {
                let get =
                    |c: &str| -> Result<u64, sqlx::Error> { Ok(from_db_int(row.try_get(c)?)) };
                let mut latency = Vec::with_capacity(LATENCY_SLOTS);
                for slot in 0..LATENCY_SLOTS {
                    latency.push(get(&format!("l{slot:02}"))?);
                }
                Ok(WindowCounts {
                    variant: row.try_get("variant")?,
                    window_start_ms: get("window_start_ms")?,
                    requests: get("requests")?,
                    responses: ClassCounts {
                        success: get("rs_2xx")?,
                        redirect: get("rs_3xx")?,
                        client_error: get("rs_4xx")?,
                        server_error: get("rs_5xx")?,
                    },
                    grpc_errors: get("grpc_errors")?,
                    latency_sum_ms: get("latency_sum_ms")?,
                    latency_ms: latency,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(windows)
    }

    async fn shadow_windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<(u64, ShadowCounts)>> {
        let rows = sqlx::query::<D::Db>(select_shadows())
            .bind(rollout)
            .bind(db_int(from_ms))
            .bind(db_int(to_ms))
            .fetch_all(&self.read)
            .await?;
        let columns = shadow_columns();
        let windows = rows
            .iter()
            .map(|row| {
                let values = columns
                    .iter()
                    .map(|c| row.try_get::<i64, _>(c.as_str()))
                    .collect::<Result<Vec<i64>, _>>()?;
                let start = from_db_int(row.try_get("window_start_ms")?);
                Ok((start, shadow_from_values(row.try_get("variant")?, &values)))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(windows)
    }

    async fn add_feedback(
        &self,
        events: &[FeedbackEvent],
        received_ms: u64,
    ) -> StoreResult<FeedbackOutcome> {
        let mut tx = self.write.begin().await?;
        let mut accepted = 0;
        for chunk in events.chunks(INSERT_CHUNK) {
            // Built from placeholders only; values are bound.
            let sql = insert_feedback(D::PLACEHOLDERS, chunk.len());
            let mut query = sqlx::query::<D::Db>(AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(&e.event_id)
                    .bind(&e.rollout)
                    .bind(&e.request_id)
                    .bind(&e.user_key)
                    .bind(e.label)
                    .bind(e.value)
                    .bind(db_int(e.observed_ms))
                    .bind(db_int(received_ms));
            }
            accepted += D::rows_affected(&query.execute(&mut *tx).await?);
        }
        tx.commit().await?;
        Ok(FeedbackOutcome {
            accepted,
            duplicates: events.len() as u64 - accepted,
        })
    }

    async fn feedback_count(&self, rollout: Option<&str>) -> StoreResult<u64> {
        let n: i64 = match rollout {
            Some(r) => {
                sqlx::query_scalar::<D::Db, i64>(COUNT_FEEDBACK_ROLLOUT)
                    .bind(r)
                    .fetch_one(&self.read)
                    .await?
            }
            None => {
                sqlx::query_scalar::<D::Db, i64>(COUNT_FEEDBACK)
                    .fetch_one(&self.read)
                    .await?
            }
        };
        Ok(from_db_int(n))
    }

    async fn sample_count(&self, rollout: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar::<D::Db, i64>(COUNT_SAMPLES)
            .bind(rollout)
            .fetch_one(&self.read)
            .await?;
        Ok(from_db_int(n))
    }

    async fn samples(&self, rollout: &str, limit: u64) -> StoreResult<Vec<Sample>> {
        let rows = sqlx::query::<D::Db>(SELECT_SAMPLES)
            .bind(rollout)
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        let samples = rows
            .iter()
            .map(|row| {
                let features: String = row.try_get("features")?;
                Ok(Sample {
                    variant: row.try_get("variant")?,
                    at_ms: from_db_int(row.try_get("at_ms")?),
                    request_id: row.try_get("request_id")?,
                    user_key: row.try_get("user_key")?,
                    features: serde_json::from_str(&features).unwrap_or_default(),
                    score: row.try_get("score")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(samples)
    }

    async fn monitored_samples(
        &self,
        rollout: &str,
        variant: &str,
        range: SampleRange,
    ) -> StoreResult<Vec<MonitoredSample>> {
        let query = match range {
            SampleRange::Time { from_ms, to_ms } => sqlx::query::<D::Db>(SELECT_MONITORED_TIME)
                .bind(rollout)
                .bind(variant)
                .bind(db_int(from_ms))
                .bind(db_int(to_ms)),
            SampleRange::After { id, limit } => sqlx::query::<D::Db>(SELECT_MONITORED_AFTER)
                .bind(rollout)
                .bind(variant)
                .bind(db_int(id))
                .bind(db_int(limit)),
            SampleRange::Through { id, limit } => sqlx::query::<D::Db>(SELECT_MONITORED_THROUGH)
                .bind(rollout)
                .bind(variant)
                .bind(db_int(id))
                .bind(db_int(limit)),
            SampleRange::Ids { .. } => {
                return Err(StoreError::Unavailable(
                    "samples by id range are read as labelled samples only".into(),
                ));
            }
        };
        let rows = query.fetch_all(&self.read).await?;
        let samples = rows
            .iter()
            .map(|row| {
                let features: String = row.try_get("features")?;
                Ok(MonitoredSample {
                    id: from_db_int(row.try_get("id")?),
                    at_ms: from_db_int(row.try_get("at_ms")?),
                    // A stored row that is not an object of numbers counts as missing
                    // every feature, never as an error.
                    features: serde_json::from_str(&features).unwrap_or_default(),
                    score: row.try_get("score")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(samples)
    }

    async fn labelled(
        &self,
        rollout: &str,
        variant: &str,
        range: SampleRange,
    ) -> StoreResult<Vec<Labelled>> {
        let (sql, a, b) = match range {
            SampleRange::Time { from_ms, to_ms } => (SELECT_LABELLED_TIME, from_ms, to_ms),
            SampleRange::Ids { after, through } => (SELECT_LABELLED_IDS, after, through),
            _ => {
                return Err(StoreError::Unavailable(
                    "labelled samples are read by time or id range".into(),
                ));
            }
        };
        let rows = sqlx::query::<D::Db>(sql)
            .bind(rollout)
            .bind(variant)
            .bind(db_int(a))
            .bind(db_int(b))
            .fetch_all(&self.read)
            .await?;
        let labelled = rows
            .iter()
            .map(|row| {
                let label: f64 = row.try_get("label")?;
                Ok(Labelled {
                    at_ms: from_db_int(row.try_get("at_ms")?),
                    score: row.try_get("score")?,
                    label: label >= 0.5,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(labelled)
    }

    async fn label_samples(&self, received_before_ms: u64, limit: u64) -> StoreResult<LabelRound> {
        const CURSOR: &str = "feedback";
        let mut tx = self.write.begin().await?;
        let cursor: Option<i64> = sqlx::query_scalar::<D::Db, i64>(SELECT_CURSOR)
            .bind(CURSOR)
            .fetch_optional(&mut *tx)
            .await?;
        let rows = sqlx::query::<D::Db>(SELECT_FEEDBACK_AFTER)
            .bind(cursor.unwrap_or(0))
            .bind(db_int(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut round = LabelRound::default();
        let mut position = cursor.unwrap_or(0);
        // Latest label per sample, in feedback order.
        let mut labels: std::collections::BTreeMap<i64, (f64, i64)> = Default::default();
        for row in &rows {
            let received: i64 = row.try_get("received_ms")?;
            if from_db_int(received) >= received_before_ms {
                // Its sample may still be on its way: this event and those after it
                // wait for the next round.
                break;
            }
            let request_id: Option<String> = row.try_get("request_id")?;
            let user_key: Option<String> = row.try_get("user_key")?;
            let label: f64 = row.try_get("label")?;
            let observed: i64 = row.try_get("observed_ms")?;
            let ids: Vec<i64> = match (&request_id, &user_key) {
                (Some(r), _) => {
                    sqlx::query_scalar::<D::Db, i64>(SELECT_SAMPLES_BY_REQUEST)
                        .bind(r)
                        .fetch_all(&mut *tx)
                        .await?
                }
                (None, Some(u)) => {
                    sqlx::query_scalar::<D::Db, i64>(SELECT_SAMPLES_BY_USER)
                        .bind(u)
                        .fetch_all(&mut *tx)
                        .await?
                }
                (None, None) => Vec::new(),
            };
            for id in ids {
                labels.insert(id, (label, observed));
            }
            position = row.try_get("id")?;
            round.feedback += 1;
        }
        for (id, (label, observed)) in &labels {
            sqlx::query::<D::Db>(UPSERT_LABEL)
                .bind(*id)
                .bind(*label)
                .bind(*observed)
                .execute(&mut *tx)
                .await?;
        }
        round.labelled = labels.len() as u64;
        if round.feedback > 0 {
            sqlx::query::<D::Db>(UPSERT_CURSOR)
                .bind(CURSOR)
                .bind(position)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(round)
    }

    async fn add_drift_window(
        &self,
        window: &WindowReport,
        events: &[ModelEvent],
    ) -> StoreResult<bool> {
        let body = serde_json::to_string(window).map_err(json_error)?;
        let mut tx = self.write.begin().await?;
        let result = sqlx::query::<D::Db>(INSERT_DRIFT_WINDOW)
            .bind(&window.model)
            .bind(db_int(window.version))
            .bind(db_int(window.end))
            .bind(db_int(window.start))
            .bind(db_int(window.judged_ms))
            .bind(body)
            .execute(&mut *tx)
            .await?;
        if D::rows_affected(&result) == 0 {
            return Ok(false);
        }
        Self::insert_model_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn drift_windows(
        &self,
        model: &str,
        version: u64,
        limit: u64,
    ) -> StoreResult<Vec<WindowReport>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_DRIFT_WINDOWS)
            .bind(model)
            .bind(db_int(version))
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn latest_drift_windows(&self) -> StoreResult<Vec<WindowReport>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_LATEST_DRIFT_WINDOWS)
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn model_versions(&self, model: &str) -> StoreResult<Vec<u64>> {
        let versions: Vec<i64> = sqlx::query_scalar::<D::Db, i64>(SELECT_MODEL_VERSIONS)
            .bind(model)
            .fetch_all(&self.read)
            .await?;
        Ok(versions.into_iter().map(from_db_int).collect())
    }

    async fn model_events(&self, after_id: u64, limit: u64) -> StoreResult<Vec<ModelEvent>> {
        let rows = sqlx::query::<D::Db>(SELECT_MODEL_EVENTS)
            .bind(db_int(after_id))
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                let id: i64 = row.try_get("id")?;
                let mut event: ModelEvent =
                    serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                event.id = from_db_int(id);
                Ok(event)
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn put_realised(
        &self,
        performance: &RealisedPerformance,
        events: &[ModelEvent],
    ) -> StoreResult<()> {
        let body = serde_json::to_string(performance).map_err(json_error)?;
        let mut tx = self.write.begin().await?;
        sqlx::query::<D::Db>(UPSERT_REALISED)
            .bind(&performance.model)
            .bind(db_int(performance.version))
            .bind(db_int(performance.evaluated_ms))
            .bind(body)
            .execute(&mut *tx)
            .await?;
        Self::insert_model_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_sample_ms(
        &self,
        rollout: &str,
        variant: &str,
        from_ms: u64,
    ) -> StoreResult<Option<u64>> {
        let at: Option<i64> = sqlx::query_scalar::<D::Db, i64>(SELECT_NEXT_SAMPLE_MS)
            .bind(rollout)
            .bind(variant)
            .bind(db_int(from_ms))
            .fetch_optional(&self.read)
            .await?;
        Ok(at.map(from_db_int))
    }

    async fn realised(&self) -> StoreResult<Vec<RealisedPerformance>> {
        let bodies: Vec<String> = sqlx::query_scalar::<D::Db, String>(SELECT_REALISED)
            .fetch_all(&self.read)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_error))
            .collect()
    }

    async fn try_lead(&self, holder: &str, now_ms: u64) -> StoreResult<bool> {
        self.dialect.try_lead(&self.write, holder, now_ms).await
    }

    async fn release_lead(&self, holder: &str) -> StoreResult<()> {
        self.dialect.release_lead(&self.write, holder).await
    }
}
