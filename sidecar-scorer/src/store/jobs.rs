//! Retraining policies and jobs, and the labelled samples a job trains on: a second
//! trait of the store, over the same SQL for both databases.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::sql::{db_int, from_db_int};
use super::sql_store::{Dialect, SqlStore};
use super::{StoreError, StoreResult};
use crate::retrain::{Job, JobStatus, Policy};

const UPSERT_POLICY: &str = "INSERT INTO retrain_policies (model, body, updated_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (model) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms";
const SELECT_POLICIES: &str = "SELECT model, body FROM retrain_policies ORDER BY model";
/// A model's second active job conflicts with the partial unique index.
const INSERT_JOB: &str = "INSERT INTO retrain_jobs (model, status, replica, created_ms, heartbeat_ms, body) \
     VALUES ($1, 'queued', NULL, $2, $2, $3) \
     ON CONFLICT (model) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id";
const SELECT_ACTIVE_JOB: &str =
    "SELECT body FROM retrain_jobs WHERE model = $1 AND status IN ('queued', 'running')";
const CLAIM_JOB: &str = "UPDATE retrain_jobs SET status = 'running', replica = $1, heartbeat_ms = $2 \
     WHERE id = $3 AND status = 'queued'";
const UPDATE_JOB: &str = "UPDATE retrain_jobs SET status = $1, heartbeat_ms = $2, body = $3 \
     WHERE id = $4 AND status = 'running' AND replica = $5";
const FAIL_JOB: &str =
    "UPDATE retrain_jobs SET status = 'failed', body = $1 WHERE id = $2 AND status = $3";
const SELECT_JOB: &str =
    "SELECT id, status, replica, heartbeat_ms, body FROM retrain_jobs WHERE id = $1";
const SELECT_JOBS: &str = "SELECT id, status, replica, heartbeat_ms, body FROM (SELECT * FROM retrain_jobs \
     WHERE model = $1 ORDER BY id DESC LIMIT $2) newest ORDER BY id";
const SELECT_OPEN_JOBS: &str = "SELECT id, status, replica, heartbeat_ms, body FROM retrain_jobs \
     WHERE status IN ('queued', 'running') ORDER BY id";
/// Every label of every labelled sample, in the order of the samples and, for one
/// sample, of the labels' observation (then arrival): the last one is the sample's.
const SELECT_LABELLED: &str = "SELECT s.id AS id, s.at_ms AS at_ms, s.features AS features, \
     f.label AS label FROM feedback f JOIN samples s ON s.request_id = f.request_id \
     WHERE s.rollout = $1 AND s.variant = $2 AND s.at_ms >= $3 \
     ORDER BY s.at_ms, s.id, f.observed_ms, f.received_ms LIMIT $4";

/// A sample whose request got an outcome label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSample {
    pub at_ms: u64,
    pub features: serde_json::Map<String, serde_json::Value>,
    pub label: f64,
}

/// A job as stored, with what only the table keeps: who runs it and its heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    pub job: Job,
    pub heartbeat_ms: u64,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn put_policy(&self, model: &str, policy: &Policy, now_ms: u64) -> StoreResult<()>;
    async fn policies(&self) -> StoreResult<Vec<(String, Policy)>>;
    /// Queues `job` and returns its id; a conflict when the model has a job queued
    /// or running.
    async fn add_job(&self, job: &Job) -> StoreResult<u64>;
    /// Makes a queued job this replica's to run; false if it is not queued (any more).
    async fn claim_job(&self, id: u64, replica: &str, now_ms: u64) -> StoreResult<bool>;
    /// Stores a running job's progress or end (and its heartbeat); false if the job is
    /// no longer this replica's running job (it was marked failed meanwhile).
    async fn update_job(&self, job: &Job, replica: &str, now_ms: u64) -> StoreResult<bool>;
    /// Marks a job failed if it is still `expected`; false if it moved on.
    async fn fail_job(&self, job: &Job, expected: JobStatus) -> StoreResult<bool>;
    async fn job(&self, id: u64) -> StoreResult<Option<StoredJob>>;
    /// The newest `limit` jobs of a model, oldest first.
    async fn jobs(&self, model: &str, limit: u64) -> StoreResult<Vec<StoredJob>>;
    /// Every queued or running job.
    async fn open_jobs(&self) -> StoreResult<Vec<StoredJob>>;
    /// The labelled samples of a rollout's variant since `from_ms`, oldest first, each
    /// with its latest label (by observation time, then arrival); at most `limit`
    /// labels are read.
    async fn labelled_samples(
        &self,
        rollout: &str,
        variant: &str,
        from_ms: u64,
        limit: u64,
    ) -> StoreResult<Vec<LabelledSample>>;
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn stored<R: Row>(row: &R) -> StoreResult<StoredJob>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'q> String: Decode<'q, R::Database> + Type<R::Database>,
    for<'q> i64: Decode<'q, R::Database> + Type<R::Database>,
{
    let body: String = row.try_get("body")?;
    let mut job: Job = serde_json::from_str(&body).map_err(json_error)?;
    // The columns are the truth the claims and heartbeats move.
    job.id = from_db_int(row.try_get("id")?);
    let status: String = row.try_get("status")?;
    job.status = serde_json::from_value(serde_json::Value::String(status)).map_err(json_error)?;
    Ok(StoredJob {
        job,
        heartbeat_ms: from_db_int(row.try_get("heartbeat_ms")?),
    })
}

#[async_trait]
impl<D> JobStore for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q, 'a> &'a str: Encode<'q, D::Db>,
    str: Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db> + Decode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> f64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
{
    async fn put_policy(&self, model: &str, policy: &Policy, now_ms: u64) -> StoreResult<()> {
        let body = serde_json::to_string(policy).map_err(json_error)?;
        sqlx::query::<D::Db>(UPSERT_POLICY)
            .bind(model)
            .bind(body)
            .bind(db_int(now_ms))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn policies(&self) -> StoreResult<Vec<(String, Policy)>> {
        let rows = sqlx::query::<D::Db>(SELECT_POLICIES)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                Ok((
                    row.try_get("model")?,
                    serde_json::from_str(&body).map_err(json_error)?,
                ))
            })
            .collect()
    }

    async fn add_job(&self, job: &Job) -> StoreResult<u64> {
        let body = serde_json::to_string(job).map_err(json_error)?;
        let id: Option<i64> = sqlx::query_scalar::<D::Db, i64>(INSERT_JOB)
            .bind(&job.model)
            .bind(db_int(job.created_ms))
            .bind(body)
            .fetch_optional(&self.write)
            .await?;
        match id {
            Some(id) => Ok(from_db_int(id)),
            None => {
                let active: Option<String> = sqlx::query_scalar::<D::Db, String>(SELECT_ACTIVE_JOB)
                    .bind(&job.model)
                    .fetch_optional(&self.read)
                    .await?;
                let which = active
                    .and_then(|b| serde_json::from_str::<Job>(&b).ok())
                    .map(|j| {
                        format!(
                            " ({} since {} ms, trigger {})",
                            j.status.as_str(),
                            j.created_ms,
                            j.trigger
                        )
                    })
                    .unwrap_or_default();
                Err(StoreError::Conflict(format!(
                    "model `{}` has a retraining job queued or running{which}",
                    job.model
                )))
            }
        }
    }

    async fn claim_job(&self, id: u64, replica: &str, now_ms: u64) -> StoreResult<bool> {
        let result = sqlx::query::<D::Db>(CLAIM_JOB)
            .bind(replica)
            .bind(db_int(now_ms))
            .bind(db_int(id))
            .execute(&self.write)
            .await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn update_job(&self, job: &Job, replica: &str, now_ms: u64) -> StoreResult<bool> {
        let body = serde_json::to_string(job).map_err(json_error)?;
        let result = sqlx::query::<D::Db>(UPDATE_JOB)
            .bind(job.status.as_str())
            .bind(db_int(now_ms))
            .bind(body)
            .bind(db_int(job.id))
            .bind(replica)
            .execute(&self.write)
            .await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn fail_job(&self, job: &Job, expected: JobStatus) -> StoreResult<bool> {
        let body = serde_json::to_string(job).map_err(json_error)?;
        let result = sqlx::query::<D::Db>(FAIL_JOB)
            .bind(body)
            .bind(db_int(job.id))
            .bind(expected.as_str())
            .execute(&self.write)
            .await?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn job(&self, id: u64) -> StoreResult<Option<StoredJob>> {
        let row = sqlx::query::<D::Db>(SELECT_JOB)
            .bind(db_int(id))
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(stored).transpose()
    }

    async fn jobs(&self, model: &str, limit: u64) -> StoreResult<Vec<StoredJob>> {
        let rows = sqlx::query::<D::Db>(SELECT_JOBS)
            .bind(model)
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(stored).collect()
    }

    async fn open_jobs(&self) -> StoreResult<Vec<StoredJob>> {
        let rows = sqlx::query::<D::Db>(SELECT_OPEN_JOBS)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(stored).collect()
    }

    async fn labelled_samples(
        &self,
        rollout: &str,
        variant: &str,
        from_ms: u64,
        limit: u64,
    ) -> StoreResult<Vec<LabelledSample>> {
        let rows = sqlx::query::<D::Db>(SELECT_LABELLED)
            .bind(rollout)
            .bind(variant)
            .bind(db_int(from_ms))
            .bind(db_int(limit))
            .fetch_all(&self.read)
            .await?;
        let mut out: Vec<(i64, LabelledSample)> = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let label: f64 = row.try_get("label")?;
            // A later label of the same sample replaces the earlier one.
            if let Some((last, sample)) = out.last_mut()
                && *last == id
            {
                sample.label = label;
                continue;
            }
            let features: String = row.try_get("features")?;
            out.push((
                id,
                LabelledSample {
                    at_ms: from_db_int(row.try_get("at_ms")?),
                    features: serde_json::from_str(&features).unwrap_or_default(),
                    label,
                },
            ));
        }
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }
}
