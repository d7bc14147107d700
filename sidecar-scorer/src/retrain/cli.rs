//! `outrider-scorer retrain ...`: a model's retraining policy and jobs on a running
//! scorer.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{Client, Connection, clock};

#[derive(Debug, Subcommand)]
pub enum RetrainCommand {
    /// Queue a retraining job for the model now (it needs a policy).
    Start { model: String },
    /// Show the model's retraining policy, or set it from a YAML or JSON file (`-`
    /// for stdin) in the shape of `PUT /v1/models/{name}/retraining`.
    Policy {
        model: String,
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// The model's newest jobs: status, trigger, times, version and outcome.
    Jobs {
        model: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job as JSON, with the end of its log.
    Job { id: u64 },
}

pub async fn run(conn: Connection, command: RetrainCommand) -> Result<()> {
    let client = Client {
        http: reqwest::Client::new(),
        conn,
    };
    let out = match command {
        RetrainCommand::Start { model } => {
            let mut body = client.attribution();
            if let Some(obj) = body.as_object_mut() {
                obj.remove("actor");
                if obj.get("reason").and_then(Value::as_str) == Some("") {
                    obj.remove("reason");
                }
            }
            client
                .send(
                    Method::POST,
                    &format!("/v1/models/{model}/retrain"),
                    Some(body),
                )
                .await?
        }
        RetrainCommand::Policy { model, file: None } => {
            client
                .send(Method::GET, &format!("/v1/models/{model}/retraining"), None)
                .await?
        }
        RetrainCommand::Policy {
            model,
            file: Some(path),
        } => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            };
            let policy: Value = serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not YAML or JSON", path.display()))?;
            client
                .send(
                    Method::PUT,
                    &format!("/v1/models/{model}/retraining"),
                    Some(policy),
                )
                .await?
        }
        RetrainCommand::Jobs { model, json } => {
            let jobs = client
                .send(Method::GET, &format!("/v1/models/{model}/jobs"), None)
                .await?;
            if !json {
                print!("{}", render_jobs(&jobs));
                return Ok(());
            }
            jobs
        }
        RetrainCommand::Job { id } => {
            client
                .send(Method::GET, &format!("/v1/jobs/{id}"), None)
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The jobs as a table, oldest first.
pub fn render_jobs(jobs: &Value) -> String {
    let list = jobs["jobs"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return format!(
            "model {}: no retraining job yet\n",
            jobs["model"].as_str().unwrap_or("")
        );
    }
    let mut out = format!(
        "{:>4}  {:<9}  {:<8}  {:<8}  {:<8}  {:>7}  outcome\n",
        "job", "status", "trigger", "created", "ended", "version"
    );
    for job in &list {
        out.push_str(&format!(
            "{:>4}  {:<9}  {:<8}  {:<8}  {:<8}  {:>7}  {}\n",
            job["id"],
            job["status"].as_str().unwrap_or(""),
            job["trigger"].as_str().unwrap_or(""),
            clock(&job["created_ms"]),
            clock(&job["ended_ms"]),
            job["version"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |v| format!("v{v}")),
            job["outcome"].as_str().unwrap_or(""),
        ));
    }
    out
}
