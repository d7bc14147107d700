//! Runs retraining jobs. The replica that leads queues jobs from the policies'
//! schedules, fails jobs whose replica went quiet, and claims queued jobs; the
//! replica that claimed a job runs its command to the end, keeping a heartbeat and the
//! log's tail in the store. A job's command runs under a supervisor that kills its
//! whole process group when the scorer dies (Linux parent-death signal), so a killed
//! scorer never leaves a job running twice: on restart it marks its own running jobs
//! failed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outrider_model::data::schema::{FEATURES, N_FEATURES};
use outrider_model::data::{Transaction, csv_file};
use outrider_model::onnx::runtime::OnnxModel;
use outrider_model::registry::{self, AnyRegistry, CHALLENGER, CHAMPION, Registry, Selector};
use tokio::sync::watch;

use super::{Job, JobStatus, Policy, compare, drift_reason, due, log_tail};
use crate::api::{AppState, now_ms};
use crate::monitor::findings::EventKind;
use crate::rollout::{Attribution, CreateRequest};
use crate::store::StoreError;

const TICK: Duration = Duration::from_secs(1);
/// How often a running job's heartbeat and log reach the store.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A running job whose heartbeat is older than this lost its replica.
const STALE_MS: u64 = 15_000;
/// Labelled samples exported per variant, at most.
const EXPORT_LIMIT: u64 = 200_000;

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    fail_own_running(&app, "the scorer running it restarted").await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut running: HashSet<u64> = HashSet::new();
    // How far the feed of the monitor's findings has been read.
    let mut feed: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
            Some(Ok(id)) = tasks.join_next(), if !tasks.is_empty() => {
                running.remove(&id);
                continue;
            }
        }
        if !app.leading.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = follow_findings(&app, &mut feed).await {
            tracing::warn!(error = %e, "retraining could not read the monitor's findings");
        }
        if let Err(e) = lead(&app, &mut tasks, &mut running).await {
            tracing::warn!(error = %e, "retraining could not look at its jobs");
        }
    }
    // Dropping the tasks kills their commands; their jobs end as failed.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    fail_own_running(&app, "the scorer running it stopped").await;
}

/// This replica's running jobs, as the store has them, marked failed with `why`.
async fn fail_own_running(app: &AppState, why: &str) {
    let Ok(open) = app.store.open_jobs().await else {
        return;
    };
    for stored in open {
        let job = stored.job;
        if job.status == JobStatus::Running
            && job.replica.as_deref() == Some(app.config.replica_id.as_str())
        {
            let failed = job.failed(why, now_ms());
            if let Ok(true) = app.store.fail_job(&failed, JobStatus::Running).await {
                tracing::warn!(job = failed.id, model = %failed.model, "{why}: job marked failed");
            }
        }
    }
}

/// Findings raised newer than this start jobs; older ones were the business of the
/// replica that led when they were raised (a new leader reads the feed from its start).
const FRESH_FINDING_MS: u64 = 60_000;

/// Reads the monitor's findings raised since `feed` and queues the jobs the models'
/// drift triggers call for.
async fn follow_findings(app: &AppState, feed: &mut u64) -> Result<(), StoreError> {
    let now = now_ms();
    loop {
        let events = app.store.model_events(*feed, 200).await?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        *feed = last.id;
        for e in &events {
            if e.kind == EventKind::Raised && e.at_ms.saturating_add(FRESH_FINDING_MS) >= now {
                let finding = e.finding.key.kind.to_string();
                on_findings(app, &e.model, &[finding]).await?;
            }
        }
    }
}

/// The leader's round: stale jobs failed, scheduled jobs queued, queued jobs claimed.
async fn lead(
    app: &AppState,
    tasks: &mut tokio::task::JoinSet<u64>,
    running: &mut HashSet<u64>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let open = app.store.open_jobs().await?;
    for stored in &open {
        let job = &stored.job;
        let mine = job.replica.as_deref() == Some(app.config.replica_id.as_str());
        let stale = now.saturating_sub(stored.heartbeat_ms) > STALE_MS;
        if job.status == JobStatus::Running && stale && !(mine && running.contains(&job.id)) {
            let who = job.replica.as_deref().unwrap_or("?");
            let failed = job.clone().failed(
                &format!("its replica {who} stopped sending heartbeats"),
                now,
            );
            app.store.fail_job(&failed, JobStatus::Running).await?;
        }
    }
    for (model, policy) in app.store.policies().await? {
        if let Some(schedule) = &policy.triggers.schedule {
            let last = last_job_ms(app, &model, "schedule").await?;
            if due(last, schedule.every_seconds.saturating_mul(1000), now) {
                let why = format!("every {} s", schedule.every_seconds);
                queue(app, &model, "schedule", &why).await?;
            }
        }
    }
    for stored in open {
        let job = stored.job;
        if job.status != JobStatus::Queued {
            continue;
        }
        if !app
            .store
            .claim_job(job.id, &app.config.replica_id, now_ms())
            .await?
        {
            continue;
        }
        let policy = app
            .store
            .policies()
            .await?
            .into_iter()
            .find(|(m, _)| *m == job.model)
            .map(|(_, p)| p);
        let app = app.clone();
        let mut job = job;
        job.status = JobStatus::Running;
        job.replica = Some(app.config.replica_id.clone());
        job.started_ms = Some(now_ms());
        running.insert(job.id);
        tasks.spawn(async move {
            let id = job.id;
            execute(&app, job, policy).await;
            id
        });
    }
    Ok(())
}

/// When the model's newest job from `trigger` was created.
async fn last_job_ms(
    app: &AppState,
    model: &str,
    trigger: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(app
        .store
        .jobs(model, 100)
        .await?
        .iter()
        .rev()
        .find(|s| s.job.trigger == trigger)
        .map(|s| s.job.created_ms))
}

/// Queues a job unless the model has one queued or running; the job, if queued.
pub async fn queue(
    app: &AppState,
    model: &str,
    trigger: &str,
    reason: &str,
) -> Result<Option<Job>, StoreError> {
    let mut job = Job::queued(model, trigger, reason, now_ms());
    match app.store.add_job(&job).await {
        Ok(id) => {
            job.id = id;
            tracing::info!(job = id, model, trigger, reason, "retraining job queued");
            Ok(Some(job))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the drift monitor found for `model`: a job if the policy's drift trigger names
/// one of `findings` and its cool-down has passed.
pub async fn on_findings(
    app: &AppState,
    model: &str,
    findings: &[String],
) -> Result<Option<Job>, StoreError> {
    let Some(policy) = app
        .store
        .policies()
        .await?
        .into_iter()
        .find(|(m, _)| m == model)
        .map(|(_, p)| p)
    else {
        return Ok(None);
    };
    let (Some(finding), Some(trigger)) = (drift_reason(&policy, findings), &policy.triggers.drift)
    else {
        return Ok(None);
    };
    let last = last_job_ms(app, model, "drift").await?;
    if !due(
        last,
        trigger.cooldown_seconds.saturating_mul(1000),
        now_ms(),
    ) {
        return Ok(None);
    }
    queue(app, model, "drift", &format!("model monitor: {finding}")).await
}

/// Runs one claimed job to its end and stores how it ended.
async fn execute(app: &AppState, mut job: Job, policy: Option<Policy>) {
    let replica = app.config.replica_id.clone();
    let result = match &policy {
        Some(policy) => attempt(app, &mut job, policy).await,
        None => Err(format!("model `{}` has no retraining policy", job.model)),
    };
    let now = now_ms();
    job.ended_ms = Some(now);
    match result {
        Ok(outcome) => {
            job.status = JobStatus::Succeeded;
            job.outcome = outcome;
        }
        Err(why) => {
            job.status = JobStatus::Failed;
            job.outcome = why;
        }
    }
    tracing::info!(job = job.id, model = %job.model, status = job.status.as_str(), outcome = %job.outcome, "retraining job ended");
    app.metrics
        .retrain_jobs
        .get_or_create(&crate::metrics::JobLabels {
            model: job.model.clone(),
            status: job.status.as_str().to_owned(),
        })
        .inc();
    if let Err(e) = app.store.update_job(&job, &replica, now).await {
        tracing::warn!(job = job.id, error = %e, "could not store how the job ended");
    }
}

/// The job's steps; its outcome, or why it failed.
async fn attempt(app: &AppState, job: &mut Job, policy: &Policy) -> Result<String, String> {
    let location = app
        .config
        .registry
        .clone()
        .ok_or("the scorer has no --registry to register a version in")?;
    let registry = AnyRegistry::open(&location).map_err(|e| format!("registry {location}: {e}"))?;
    let dir = app.config.jobs_dir.join(format!("job-{}", job.id));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let since = now_ms().saturating_sub(policy.labelled_window_seconds.saturating_mul(1000));
    let labelled = labelled_window(app, &job.model, since).await?;
    let data = dir.join("data.csv");
    let reference = match &policy.reference_data {
        Some(path) => {
            csv_file::read(Path::new(path)).map_err(|e| format!("reference_data: {e}"))?
        }
        None => Vec::new(),
    };
    let mut rows = reference.clone();
    rows.extend(labelled.iter().cloned());
    if rows.is_empty() {
        return Err("nothing to train on: no reference data and no labelled samples".into());
    }
    csv_file::write(&data, &rows).map_err(|e| format!("writing {}: {e}", data.display()))?;
    let before = newest_version(&registry, &job.model).await;
    job.command = policy.command.clone().unwrap_or_else(|| {
        vec![
            app.config.model_binary.display().to_string(),
            "--registry".into(),
            location.clone(),
            "train".into(),
            "--data".into(),
            data.display().to_string(),
            "--name".into(),
            job.model.clone(),
            "--out".into(),
            dir.join("out").display().to_string(),
        ]
    });
    let env = [
        ("OUTRIDER_JOB_ID", job.id.to_string()),
        ("OUTRIDER_MODEL", job.model.clone()),
        ("OUTRIDER_REGISTRY", location.clone()),
        ("OUTRIDER_DATA", data.display().to_string()),
        ("OUTRIDER_JOB_DIR", dir.display().to_string()),
    ];
    let code = run_command(app, job, &env, &dir, policy.timeout_seconds).await?;
    job.exit_code = Some(code);
    if code != 0 {
        return Err(format!("the command exited with status {code}"));
    }
    let Some(version) = newest_version(&registry, &job.model)
        .await
        .filter(|v| Some(*v) > before)
    else {
        return Err("the command succeeded but registered no new version".into());
    };
    job.version = Some(version);
    let versions = registry
        .list_versions(&job.model)
        .await
        .map_err(|e| format!("registry: {e}"))?;
    if !versions
        .iter()
        .any(|v| v.version == version && v.aliases.iter().any(|a| a == CHALLENGER))
    {
        registry
            .set_alias(&job.model, CHALLENGER, version)
            .await
            .map_err(|e| format!("registry: making v{version} the challenger: {e}"))?;
    }
    let champion = versions
        .iter()
        .find(|v| v.aliases.iter().any(|a| a == CHAMPION))
        .map(|v| v.version);
    let comparison = challenge(
        &registry,
        &job.model,
        version,
        champion,
        &labelled,
        &policy.gate,
    )
    .await?;
    let passed = comparison.passed;
    let why = comparison.reason.clone();
    job.comparison = Some(comparison);
    let registered = format!("registered v{version} as {CHALLENGER}");
    if !passed {
        return Ok(format!("{registered}; not rolled out: {why}"));
    }
    let Some(template) = &policy.rollout else {
        return Ok(format!("{registered}; {why}"));
    };
    let name = start_rollout(app, job, template, champion, version, &why).await?;
    job.rollout = Some(name.clone());
    Ok(format!("{registered}; {why}; rollout `{name}` started"))
}

/// The newest registered version of `model`, if any.
async fn newest_version(registry: &AnyRegistry, model: &str) -> Option<u64> {
    registry
        .list_versions(model)
        .await
        .ok()?
        .iter()
        .map(|v| v.version)
        .max()
}

/// The labelled samples of every rollout variant that serves a version of `model`,
/// since `since_ms`, as transactions.
async fn labelled_window(
    app: &AppState,
    model: &str,
    since_ms: u64,
) -> Result<Vec<Transaction>, String> {
    let prefix = format!("models:/{model}/");
    let rollouts = app.store.rollouts().await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for rollout in &rollouts {
        for variant in &rollout.variants {
            if !variant
                .model
                .as_deref()
                .is_some_and(|m| m.starts_with(&prefix))
            {
                continue;
            }
            let samples = app
                .store
                .labelled_samples(&rollout.name, &variant.name, since_ms, EXPORT_LIMIT)
                .await
                .map_err(|e| e.to_string())?;
            for s in samples {
                if let Some(row) = input_row(&s.features) {
                    let id = rows.len() as u64 + 1;
                    rows.push(Transaction::from_features(
                        id,
                        (s.at_ms / 1000) as i64,
                        &row,
                        s.label >= 0.5,
                    ));
                }
            }
        }
    }
    Ok(rows)
}

/// The model's input row from a sample's features by name; none if one is missing
/// or not a number (a broken sample is not trained on).
fn input_row(features: &serde_json::Map<String, serde_json::Value>) -> Option<[f64; N_FEATURES]> {
    let mut row = [0.0; N_FEATURES];
    for (slot, name) in row.iter_mut().zip(FEATURES) {
        *slot = features.get(name)?.as_f64()?;
    }
    Some(row)
}

/// Runs the job's command in `dir` with `env`, its output into `dir/job.log`, for at
/// most `timeout_seconds`; its exit status. The log's tail reaches the store with
/// every heartbeat.
async fn run_command(
    app: &AppState,
    job: &mut Job,
    env: &[(&str, String)],
    dir: &Path,
    timeout_seconds: u64,
) -> Result<i32, String> {
    let log_path = dir.join("job.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    if job.command.is_empty() {
        return Err("the command is empty".into());
    }
    let program = &job.command[0];
    let supervisor =
        std::env::current_exe().map_err(|e| format!("no path to this program: {e}"))?;
    let mut command = tokio::process::Command::new(supervisor);
    command
        .arg("supervise")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--")
        .args(&job.command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .process_group(0);
    term_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    // Whichever way this ends (an answer, a timeout, the task dropped on shutdown),
    // the job's processes go with it.
    let group = Group(child.id().map(|pid| pid as libc::pid_t));
    let kill_group = || group.kill();
    let replica = app.config.replica_id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_seconds);
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            status = child.wait() => {
                job.log = read_tail(&log_path);
                let status = status.map_err(|e| e.to_string())?;
                return Ok(status.code().unwrap_or(-1));
            }
            _ = tokio::time::sleep_until(deadline) => {
                kill_group();
                let _ = child.wait().await;
                job.log = read_tail(&log_path);
                return Err(format!("timed out after {timeout_seconds} s; the command was killed"));
            }
            _ = beat.tick() => {
                job.log = read_tail(&log_path);
                match app.store.update_job(job, &replica, now_ms()).await {
                    Ok(true) => {}
                    // Marked failed meanwhile (its heartbeat was late): stop.
                    Ok(false) => {
                        kill_group();
                        let _ = child.wait().await;
                        return Err("the job was marked failed while it ran; the command was killed".into());
                    }
                    Err(e) => tracing::warn!(job = job.id, error = %e, "no heartbeat stored"),
                }
            }
        }
    }
}

/// The job's process group, led by its supervisor: killing it ends the command's
/// children too. Killed when dropped.
struct Group(Option<libc::pid_t>);

impl Group {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: a plain kill(2) of the job's own process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The supervisor gets SIGTERM when the scorer's thread that started it dies, and
/// kills the job's whole process group (see [`super::supervise`]).
fn term_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches nothing but the child's state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn read_tail(path: &PathBuf) -> String {
    std::fs::read(path)
        .map(|bytes| log_tail(&String::from_utf8_lossy(&bytes)))
        .unwrap_or_default()
}

/// Scores the labelled window with the challenger and the champion and judges them.
async fn challenge(
    registry: &AnyRegistry,
    model: &str,
    challenger: u64,
    champion: Option<u64>,
    labelled: &[Transaction],
    gate: &super::ChallengerGate,
) -> Result<compare::Comparison, String> {
    let rows: Vec<&Transaction> = labelled.iter().collect();
    let labels: Vec<bool> = labelled.iter().map(Transaction::fraud).collect();
    let ours = scores(registry, model, challenger, &rows).await?;
    let theirs = match champion {
        Some(v) => Some((v, scores(registry, model, v, &rows).await?)),
        None => None,
    };
    Ok(compare::judge(
        gate,
        &labels,
        (challenger, &ours),
        theirs.as_ref().map(|(v, s)| (*v, s.as_slice())),
    ))
}

async fn scores(
    registry: &AnyRegistry,
    model: &str,
    version: u64,
    rows: &[&Transaction],
) -> Result<Vec<f64>, String> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let found = registry
        .get_version(model, &Selector::Version(version))
        .await
        .map_err(|e| format!("registry: v{version}: {e}"))?;
    let files = registry::fetch(registry, found)
        .await
        .map_err(|e| format!("registry: v{version}: {e}"))?;
    let onnx = OnnxModel::from_bytes(&files.onnx).map_err(|e| format!("v{version}: {e}"))?;
    outrider_model::train::score(&onnx, rows).map_err(|e| format!("v{version} scoring: {e}"))
}

/// Starts the policy's rollout of the new version: the template with the champion on
/// the baseline (listed first) and the challenger on the candidate (listed last).
async fn start_rollout(
    app: &AppState,
    job: &Job,
    template: &serde_json::Value,
    champion: Option<u64>,
    challenger: u64,
    why: &str,
) -> Result<String, String> {
    let mut body = template.clone();
    let variants = body["variants"]
        .as_array_mut()
        .filter(|v| v.len() >= 2)
        .ok_or("rollout: the template needs a baseline and a candidate in `variants`")?;
    let last = variants.len() - 1;
    if let Some(v) = champion {
        variants[0]["model"] = serde_json::json!(format!("models:/{}/{v}", job.model));
    }
    variants[last]["model"] = serde_json::json!(format!("models:/{}/{challenger}", job.model));
    let req: CreateRequest =
        serde_json::from_value(body).map_err(|e| format!("rollout template: {e}"))?;
    let by = Attribution {
        actor: "retraining".into(),
        reason: format!("retraining job {} registered v{challenger}: {why}", job.id),
    };
    let name = req.name.clone();
    crate::api::rollouts::create_or_replan(app, req, &by)
        .await
        .map_err(|e| format!("rollout `{name}`: {}", e.message))?;
    Ok(name)
}
