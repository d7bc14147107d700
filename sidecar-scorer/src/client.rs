//! `outrider-scorer rollout ...`: a client of a running scorer's API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

/// Where the server is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Base URL of the scorer's API.
    #[arg(
        long,
        env = "OUTRIDER_SERVER",
        default_value = "http://127.0.0.1:8750",
        global = true
    )]
    pub server: String,
    /// Admin bearer token (needed to change rollouts).
    #[arg(
        long,
        env = "OUTRIDER_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Who is making the change, recorded in the rollout's events [default: $USER].
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// Why, recorded in the rollout's events.
    #[arg(long, global = true)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// List every rollout with its status and weights.
    List,
    /// Show one rollout.
    Get { name: String },
    /// Create a rollout, from flags or from a JSON file (`-` for stdin) in the shape
    /// of `POST /v1/rollouts`.
    Create {
        name: Option<String>,
        /// A variant and its weight in percent, baseline first: `--variant stable=90
        /// --variant canary=10`.
        #[arg(long = "variant", value_name = "NAME=WEIGHT")]
        variants: Vec<String>,
        /// canary, blue_green or ab.
        #[arg(long, default_value = "canary")]
        mode: String,
        #[arg(long, conflicts_with_all = ["name", "variants"])]
        file: Option<PathBuf>,
    },
    /// Set the weights: `set-weights fraud stable=70 canary=30`.
    SetWeights {
        name: String,
        #[arg(value_name = "NAME=WEIGHT", required = true)]
        weights: Vec<String>,
    },
    /// Freeze the weights (the step schedule stops advancing).
    Pause { name: String },
    /// Let a paused rollout advance again.
    Resume { name: String },
    /// Send all traffic to the candidate (or to --variant).
    Promote {
        name: String,
        #[arg(long)]
        variant: Option<String>,
    },
    /// Send all traffic back to the baseline.
    Rollback { name: String },
    /// Show the rollout's history of changes.
    Events { name: String },
    /// Show the per-variant counts the filters reported.
    Telemetry { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ShadowCommand {
    /// How each shadow variant compares with the primary, and the verdict of the
    /// rollout's shadow gate.
    Report {
        name: String,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// Judge with this minimum agreement instead of the rollout's.
        #[arg(long)]
        min_agreement: Option<f64>,
        /// Judge with this minimum number of comparisons instead of the rollout's.
        #[arg(long)]
        min_comparisons: Option<u64>,
    },
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |p| format!("{:.2}%", p * 100.0))
}

fn number(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |n| format!("{n:.4}"))
}

/// A shadow report as a person reads it.
pub fn render_shadow(report: &Value) -> String {
    let mut out = String::new();
    for s in report["shadows"].as_array().into_iter().flatten() {
        let reasons: Vec<&str> = s["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "shadow {} of rollout {}: {}{}\n",
            s["variant"].as_str().unwrap_or("?"),
            report["rollout"].as_str().unwrap_or("?"),
            s["verdict"].as_str().unwrap_or("?").to_uppercase(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
            }
        ));
        let a = &s["agreement"];
        out.push_str(&format!(
            "  compared {}  agreement {} (95% CI {} to {})\n",
            s["compared"],
            percent(&a["rate"]),
            percent(&a["ci_low"]),
            percent(&a["ci_high"])
        ));
        let c = &s["confusion"];
        out.push_str(&format!(
            "  labels         shadow 0   shadow 1\n  primary 0  {:>12} {:>10}\n  primary 1  {:>12} {:>10}\n",
            c["primary_0"]["shadow_0"], c["primary_0"]["shadow_1"], c["primary_1"]["shadow_0"], c["primary_1"]["shadow_1"]
        ));
        let d = &s["score_diff"];
        out.push_str(&format!(
            "  |score difference|  p50 {}  p90 {}  p99 {}  max {}\n",
            number(&d["p50"]),
            number(&d["p90"]),
            number(&d["p99"]),
            number(&d["max"])
        ));
        let l = &s["latency_ms"];
        out.push_str(&format!(
            "  latency ms  shadow p50 {} p99 {}  primary p50 {} p99 {}  mean shadow - primary {}\n",
            number(&l["shadow_p50"]),
            number(&l["shadow_p99"]),
            number(&l["primary_p50"]),
            number(&l["primary_p99"]),
            number(&l["mean_shadow_minus_primary"])
        ));
        out.push_str(&format!(
            "  mirrored {}  completed {}  errors {}  timeouts {}  (failure rate {})  no prediction: primary {}, shadow {}\n",
            s["mirrored"], s["completed"], s["errors"], s["timeouts"], percent(&s["error_rate"]["rate"]), s["no_prediction_primary"], s["no_prediction_shadow"]
        ));
        if let Some(skipped) = s["skipped"].as_object().filter(|m| !m.is_empty()) {
            let parts: Vec<String> = skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("  not compared: {}\n", parts.join(", ")));
        }
    }
    if out.is_empty() {
        out.push_str("no shadow telemetry yet\n");
    }
    out
}

pub async fn run_shadow(conn: Connection, command: ShadowCommand) -> Result<()> {
    let client = Client {
        http: reqwest::Client::new(),
        conn,
    };
    let ShadowCommand::Report {
        name,
        json,
        min_agreement,
        min_comparisons,
    } = command;
    let mut query = Vec::new();
    if let Some(a) = min_agreement {
        query.push(format!("min_agreement={a}"));
    }
    if let Some(n) = min_comparisons {
        query.push(format!("min_comparisons={n}"));
    }
    let path = format!(
        "/v1/rollouts/{name}/shadow{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let report = client.send(reqwest::Method::GET, &path, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_shadow(&report));
    }
    Ok(())
}

fn parse_pair(text: &str) -> Result<(String, f64)> {
    let (name, weight) = text
        .split_once('=')
        .with_context(|| format!("`{text}` is not NAME=WEIGHT"))?;
    let weight: f64 = weight
        .trim()
        .parse()
        .with_context(|| format!("`{weight}` in `{text}` is not a number"))?;
    Ok((name.trim().to_owned(), weight))
}

struct Client {
    http: reqwest::Client,
    conn: Connection,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.server.trim_end_matches('/'))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = &self.conn.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the scorer at {}", self.conn.server))?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let error = &value["error"];
            let field = error["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default();
            bail!(
                "{status}: {}{field}",
                error["message"].as_str().unwrap_or(&value.to_string())
            );
        }
        Ok(value)
    }

    fn attribution(&self) -> Value {
        let actor = self
            .conn
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into());
        json!({"actor": actor, "reason": self.conn.reason.clone().unwrap_or_default()})
    }
}

fn weights_of(rollout: &Value) -> String {
    rollout["variants"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| format!("{}={}", v["name"].as_str().unwrap_or("?"), v["weight"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub async fn run(conn: Connection, command: RolloutCommand) -> Result<()> {
    let client = Client {
        http: reqwest::Client::new(),
        conn,
    };
    use reqwest::Method;
    let output = match command {
        RolloutCommand::List => {
            let all = client.send(Method::GET, "/v1/rollouts", None).await?;
            println!(
                "{:<24} {:<10} {:<12} {:>7}  weights",
                "name", "mode", "status", "version"
            );
            for r in all["rollouts"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {:<12} {:>7}  {}",
                    r["name"].as_str().unwrap_or(""),
                    r["mode"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or(""),
                    r["version"],
                    weights_of(r)
                );
            }
            return Ok(());
        }
        RolloutCommand::Get { name } => {
            client
                .send(Method::GET, &format!("/v1/rollouts/{name}"), None)
                .await?
        }
        RolloutCommand::Create {
            name,
            variants,
            mode,
            file,
        } => {
            let mut body: Value = match file {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?
                    };
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => {
                    let name = name.context("give the rollout's name, or --file")?;
                    let variants: Vec<Value> = variants
                        .iter()
                        .map(|v| parse_pair(v).map(|(n, w)| json!({"name": n, "weight": w})))
                        .collect::<Result<_>>()?;
                    json!({"name": name, "mode": mode, "variants": variants})
                }
            };
            if let (Some(obj), Value::Object(by)) = (body.as_object_mut(), client.attribution()) {
                for (k, v) in by {
                    obj.entry(k).or_insert(v);
                }
            }
            client
                .send(Method::POST, "/v1/rollouts", Some(body))
                .await?
        }
        RolloutCommand::SetWeights { name, weights } => {
            let weights: BTreeMap<String, f64> = weights
                .iter()
                .map(|w| parse_pair(w))
                .collect::<Result<_>>()?;
            let mut body = client.attribution();
            body["weights"] = json!(weights);
            client
                .send(
                    Method::PUT,
                    &format!("/v1/rollouts/{name}/weights"),
                    Some(body),
                )
                .await?
        }
        RolloutCommand::Pause { name } => {
            client
                .send(
                    Method::POST,
                    &format!("/v1/rollouts/{name}/pause"),
                    Some(client.attribution()),
                )
                .await?
        }
        RolloutCommand::Resume { name } => {
            client
                .send(
                    Method::POST,
                    &format!("/v1/rollouts/{name}/resume"),
                    Some(client.attribution()),
                )
                .await?
        }
        RolloutCommand::Promote { name, variant } => {
            let mut body = client.attribution();
            if let Some(v) = variant {
                body["variant"] = json!(v);
            }
            client
                .send(
                    Method::POST,
                    &format!("/v1/rollouts/{name}/promote"),
                    Some(body),
                )
                .await?
        }
        RolloutCommand::Rollback { name } => {
            client
                .send(
                    Method::POST,
                    &format!("/v1/rollouts/{name}/rollback"),
                    Some(client.attribution()),
                )
                .await?
        }
        RolloutCommand::Events { name } => {
            client
                .send(Method::GET, &format!("/v1/rollouts/{name}/events"), None)
                .await?
        }
        RolloutCommand::Telemetry { name } => {
            client
                .send(Method::GET, &format!("/v1/rollouts/{name}/telemetry"), None)
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
