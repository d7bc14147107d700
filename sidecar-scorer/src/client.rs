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
        /// A threshold of the shadow gate: `--shadow-gate min_copies=200 --shadow-gate
        /// max_timeout_rate=0.05`. Keys: min_agreement, min_comparisons, max_error_rate,
        /// max_timeout_rate, min_copies. Thresholds not given keep the file's value, or
        /// the default.
        #[arg(long = "shadow-gate", value_name = "KEY=VALUE")]
        shadow_gate: Vec<String>,
    },
    /// Create a rollout from a spec file, YAML or JSON, in the shape of
    /// `POST /v1/rollouts` (see docs/rollouts.md); `-` reads stdin. A rollout that
    /// already exists with the same spec is left as it is; one with another spec is
    /// refused (a running rollout's plan is not changed under it).
    Apply {
        #[arg(short = 'f', long)]
        file: PathBuf,
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
    /// Stop a running rollout for good: all traffic back to the baseline.
    Abort { name: String },
    /// Show the rollout's history of changes.
    Events { name: String },
    /// Show the per-variant counts the filters reported.
    Telemetry { name: String },
    /// The rollout's status and its analysis runs as a table: each run's interval,
    /// step, outcome and every check's figure against the baseline's. For an A/B
    /// experiment, its runs: exposures, each metric's figure per variant, lifts with
    /// their intervals, p-values raw and Holm-adjusted, and the SRM p-value.
    Status {
        name: String,
        /// Runs to show, newest last.
        #[arg(long, default_value_t = 20)]
        runs: u64,
        /// Print the JSON of `GET /v1/rollouts/{name}/analysis` (or `/experiment`)
        /// instead.
        #[arg(long)]
        json: bool,
    },
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
        /// Judge agreement once there are this many comparisons, instead of the
        /// rollout's minimum.
        #[arg(long)]
        min_comparisons: Option<u64>,
        /// Judge with this largest share of ended copies answered with an error.
        #[arg(long)]
        max_error_rate: Option<f64>,
        /// Judge with this largest share of ended copies that timed out.
        #[arg(long)]
        max_timeout_rate: Option<f64>,
        /// Judge errors and timeouts once this many copies ended, instead of the
        /// rollout's minimum.
        #[arg(long)]
        min_copies: Option<u64>,
    },
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |p| format!("{:.2}%", p * 100.0))
}

fn number(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |n| format!("{n:.2}"))
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The bucket of |score difference| that holds a quantile, from the report's
/// histogram: `[0, 0.0001]`, `(0.02, 0.05]`, `> 1`.
fn score_diff_range(histogram: &Value, q: f64) -> String {
    let buckets: Vec<(Option<f64>, u64)> = histogram
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| (b["le"].as_f64(), count(&b["count"])))
        .collect();
    let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
    let Some(i) = crate::histogram::quantile_bucket(&counts, q) else {
        return "-".to_owned();
    };
    let lower = i
        .checked_sub(1)
        .and_then(|j| buckets.get(j))
        .and_then(|(le, _)| *le);
    match (lower, buckets[i].0) {
        (None, Some(upper)) => format!("[0, {upper}]"),
        (Some(lower), Some(upper)) => format!("({lower}, {upper}]"),
        (Some(lower), None) => format!("> {lower}"),
        (None, None) => "-".to_owned(),
    }
}

/// A rollout spec as YAML (or JSON, which YAML reads too).
pub fn parse_spec(text: &str) -> Result<Value> {
    let spec: Value = serde_saphyr::from_str(text).context("not a YAML or JSON rollout spec")?;
    if !spec.is_object() {
        bail!("a rollout spec is a mapping with `name`, `variants`, ...");
    }
    Ok(spec)
}

/// The parts of a spec an existing rollout does not match. Weights are left out: they
/// move as the rollout runs.
pub fn spec_differences(spec: &Value, existing: &Value) -> Vec<&'static str> {
    let names = |v: &Value| -> Vec<Value> {
        v["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].clone())
            .collect()
    };
    let mut out = Vec::new();
    let mode = spec.get("mode").cloned().unwrap_or(json!("canary"));
    if mode != existing["mode"] {
        out.push("mode");
    }
    if names(spec) != names(existing) {
        out.push("variants");
    }
    let steps = |v: &Value| -> Vec<(BTreeMap<String, f64>, u64)> {
        v["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let weights = s["weights"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, w)| (k.clone(), w.as_f64().unwrap_or(f64::NAN)))
                    .filter(|(_, w)| *w != 0.0)
                    .collect();
                (weights, s["hold_seconds"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    // A blue-green preview's one step is derived from its `blue_green` section.
    if spec["blue_green"].is_null() && steps(spec) != steps(existing) {
        out.push("steps");
    }
    // Compared as the server reads them, defaults filled in.
    fn parsed<T: serde::de::DeserializeOwned + PartialEq>(v: &Value) -> Option<T> {
        serde_json::from_value(v.clone()).ok()
    }
    if !spec["analysis"].is_null()
        && parsed::<crate::analysis::AnalysisSpec>(&spec["analysis"])
            != parsed(&existing["analysis"])
    {
        out.push("analysis");
    }
    if !spec["experiment"].is_null()
        && parsed::<crate::experiment::ExperimentSpec>(&spec["experiment"])
            != parsed(&existing["experiment"])
    {
        out.push("experiment");
    }
    if !spec["shadow_gate"].is_null()
        && parsed::<crate::shadow_report::ShadowGate>(&spec["shadow_gate"])
            != parsed(&existing["shadow_gate"])
    {
        out.push("shadow_gate");
    }
    if parsed::<Option<crate::rollout::ShadowStage>>(&spec["shadow"]) != parsed(&existing["shadow"])
    {
        out.push("shadow");
    }
    if parsed::<Option<crate::rollout::BlueGreen>>(&spec["blue_green"])
        != parsed(&existing["blue_green"])
    {
        out.push("blue_green");
    }
    let gates = |v: &Value| -> Option<crate::gates::Gates> {
        if v.is_null() {
            Some(crate::gates::Gates::default())
        } else {
            parsed(v)
        }
    };
    if gates(&spec["gates"]) != gates(&existing["gates"]) {
        out.push("gates");
    }
    out
}

/// A time of day (UTC) from ms since the epoch: `14:03:20`.
pub(crate) fn clock(ms: &Value) -> String {
    ms.as_u64().map_or_else(
        || "-".to_owned(),
        |ms| {
            let s = (ms / 1000) % 86_400;
            format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
        },
    )
}

/// A figure of a check: shares as percent, latencies and distances as they are.
fn figure(metric: &str, v: &Value) -> String {
    match metric {
        "error_rate" | "grpc_error_rate" | "score_share_above" => percent(v),
        _ => v
            .as_f64()
            .map_or_else(|| "-".to_owned(), |n| format!("{n:.4}")),
    }
}

/// `GET /v1/rollouts/{name}/analysis` as a person reads it: one line per run, then its
/// checks indented below it.
pub fn render_status(status: &Value) -> String {
    let mut out = format!(
        "rollout {}: {}, step {}\n",
        status["rollout"].as_str().unwrap_or(""),
        status["status"].as_str().unwrap_or(""),
        status["step"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |s| (s + 1).to_string())
    );
    if let Some(held) = status["held"].as_object() {
        let said = held
            .get("status")
            .and_then(Value::as_u64)
            .map_or_else(|| "did not answer".to_owned(), |s| format!("answered {s}"));
        out.push_str(&format!(
            "held by gate {} since {}: {said} {}\n",
            held.get("gate").and_then(Value::as_str).unwrap_or(""),
            clock(held.get("at_ms").unwrap_or(&Value::Null)),
            held.get("message").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if status["awaiting_promotion"] == true {
        out.push_str("the analysis passed: `rollout promote` switches\n");
    }
    if let Some(until) = status["rollback_window_until_ms"].as_u64() {
        out.push_str(&format!(
            "rollback window open until {} (a rollback is one switch back)\n",
            clock(&json!(until))
        ));
    }
    let runs = status["runs"].as_array().cloned().unwrap_or_default();
    if status["analysis"].is_null() {
        out.push_str("no analysis: steps advance on their hold alone\n");
        return out;
    }
    if runs.is_empty() {
        out.push_str(
            "no analysis run yet (a run waits for its interval's telemetry to be complete)\n",
        );
        return out;
    }
    out.push_str(&format!(
        "{:<19} {:>4}  {:<12}  {}\n    {:<22} {:<10} {:>10} {:>10}  {:<12} why\n",
        "interval (UTC)",
        "step",
        "outcome",
        "requests",
        "check",
        "candidate",
        "value",
        "baseline",
        "outcome"
    ));
    for run in &runs {
        let requests: Vec<String> = run["requests"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(v, n)| format!("{v}={n}"))
            .collect();
        out.push_str(&format!(
            "{:<19} {:>4}  {:<12}  {}\n",
            format!("{}-{}", clock(&run["start_ms"]), clock(&run["end_ms"])),
            run["step"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |s| (s + 1).to_string()),
            run["outcome"].as_str().unwrap_or(""),
            requests.join(" ")
        ));
        let checks = run["checks"].as_array().cloned().unwrap_or_default();
        if checks.is_empty() {
            out.push_str(&format!("    {}\n", run["reason"].as_str().unwrap_or("")));
        }
        for c in &checks {
            let metric = c["metric"].as_str().unwrap_or("");
            out.push_str(&format!(
                "    {:<22} {:<10} {:>10} {:>10}  {:<12} {}{}\n",
                c["name"].as_str().unwrap_or(""),
                c["candidate"].as_str().unwrap_or(""),
                figure(metric, &c["value"]),
                figure(metric, &c["baseline"]),
                c["outcome"].as_str().unwrap_or(""),
                if c["dry_run"] == true {
                    "(dry run) "
                } else {
                    ""
                },
                c["reason"].as_str().unwrap_or("")
            ));
            if let Some(query) = c["query"].as_str() {
                out.push_str(&format!("        query: {query}\n"));
            }
        }
    }
    out
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
        out.push_str(&format!(
            "  copies  mirrored {}  ended {}: completed {}, errors {} ({}), timeouts {} ({})\n",
            count(&s["mirrored"]),
            count(&s["ended"]),
            count(&s["completed"]),
            count(&s["errors"]),
            percent(&s["error_rate"]["rate"]),
            count(&s["timeouts"]),
            percent(&s["timeout_rate"]["rate"]),
        ));
        let a = &s["agreement"];
        out.push_str(&format!(
            "  compared {}  agreement {} (95% CI {} to {})  no prediction: primary {}, shadow {}\n",
            count(&s["compared"]),
            percent(&a["rate"]),
            percent(&a["ci_low"]),
            percent(&a["ci_high"]),
            count(&s["no_prediction_primary"]),
            count(&s["no_prediction_shadow"]),
        ));
        let c = &s["confusion"];
        let cells = [
            [
                count(&c["primary_0"]["shadow_0"]),
                count(&c["primary_0"]["shadow_1"]),
            ],
            [
                count(&c["primary_1"]["shadow_0"]),
                count(&c["primary_1"]["shadow_1"]),
            ],
        ];
        let width = cells
            .iter()
            .flatten()
            .map(|n| n.to_string().len())
            .max()
            .unwrap_or(1)
            .max("shadow 0".len())
            + 2;
        out.push_str(&format!(
            "  {:<11}{:>width$}{:>width$}\n",
            "labels", "shadow 0", "shadow 1"
        ));
        for (p, row) in cells.iter().enumerate() {
            out.push_str(&format!(
                "  {:<11}{:>width$}{:>width$}\n",
                format!("primary {p}"),
                row[0],
                row[1]
            ));
        }
        let h = &s["score_diff_histogram"];
        out.push_str(&format!(
            "  |score difference|, the bucket that holds each quantile:  p50 {}  p90 {}  p99 {}  max {}\n",
            score_diff_range(h, 0.5),
            score_diff_range(h, 0.9),
            score_diff_range(h, 0.99),
            score_diff_range(h, 1.0)
        ));
        let l = &s["latency_ms"];
        let covers = &s["latency_covers"];
        out.push_str(&format!(
            "  latency ms  shadow p50 {} p99 {} over {} answered copies ({} timed out, {}, left out)\n",
            number(&l["shadow_p50"]),
            number(&l["shadow_p99"]),
            count(&covers["shadow_answered"]),
            count(&covers["timed_out"]),
            percent(&covers["timed_out_share"]),
        ));
        out.push_str(&format!(
            "              primary p50 {} p99 {}  mean shadow - primary {} over {} compared pairs\n",
            number(&l["primary_p50"]),
            number(&l["primary_p99"]),
            number(&l["mean_shadow_minus_primary"]),
            count(&covers["compared"]),
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
        max_error_rate,
        max_timeout_rate,
        min_copies,
    } = command;
    let query: Vec<String> = [
        ("min_agreement", min_agreement.map(|v| v.to_string())),
        ("min_comparisons", min_comparisons.map(|v| v.to_string())),
        ("max_error_rate", max_error_rate.map(|v| v.to_string())),
        ("max_timeout_rate", max_timeout_rate.map(|v| v.to_string())),
        ("min_copies", min_copies.map(|v| v.to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
    .collect();
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

/// `KEY=VALUE` of `--shadow-gate`: the value as JSON, an integer when it is one (the
/// minimums are counts).
fn parse_gate(text: &str) -> Result<(String, Value)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("`{text}` is not KEY=VALUE"))?;
    let value = value.trim();
    let value = match value.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("`{value}` in `{text}` is not a number"))?
        ),
    };
    Ok((key.trim().to_owned(), value))
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

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) conn: Connection,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.server.trim_end_matches('/'))
    }

    /// A GET that may find nothing: `None` for a 404.
    async fn find(&self, path: &str) -> Result<Option<Value>> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .with_context(|| format!("cannot reach the scorer at {}", self.conn.server))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .context("the scorer answered no JSON")?;
        if !status.is_success() {
            bail!("{status}: {}", value["error"]["message"]);
        }
        Ok(Some(value))
    }

    pub(crate) async fn send(
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

    pub(crate) fn attribution(&self) -> Value {
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
            shadow_gate,
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
            if !shadow_gate.is_empty() {
                if !body.is_object() {
                    bail!("the rollout must be a JSON object");
                }
                let gate = &mut body["shadow_gate"];
                if !gate.is_object() {
                    *gate = json!({});
                }
                for text in &shadow_gate {
                    let (key, value) = parse_gate(text)?;
                    gate[key] = value;
                }
            }
            if let (Some(obj), Value::Object(by)) = (body.as_object_mut(), client.attribution()) {
                for (k, v) in by {
                    obj.entry(k).or_insert(v);
                }
            }
            client
                .send(Method::POST, "/v1/rollouts", Some(body))
                .await?
        }
        RolloutCommand::Apply { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let spec = parse_spec(&text).with_context(|| format!("{}", file.display()))?;
            let name = spec["name"]
                .as_str()
                .with_context(|| format!("{}: the spec has no `name`", file.display()))?
                .to_owned();
            match client.find(&format!("/v1/rollouts/{name}")).await? {
                Some(existing) => {
                    let differ = spec_differences(&spec, &existing);
                    if !differ.is_empty() {
                        bail!(
                            "rollout `{name}` exists with another {}: a running rollout's plan is not changed; roll it back or promote it, or apply under a new name",
                            differ.join(", ")
                        );
                    }
                    json!({"result": "unchanged", "rollout": existing})
                }
                None => {
                    let mut body = spec;
                    if let (Some(obj), Value::Object(by)) =
                        (body.as_object_mut(), client.attribution())
                    {
                        for (k, v) in by {
                            obj.entry(k).or_insert(v);
                        }
                    }
                    let created = client
                        .send(Method::POST, "/v1/rollouts", Some(body))
                        .await?;
                    json!({"result": "created", "rollout": created})
                }
            }
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
        RolloutCommand::Abort { name } => {
            client
                .send(
                    Method::POST,
                    &format!("/v1/rollouts/{name}/abort"),
                    Some(client.attribution()),
                )
                .await?
        }
        RolloutCommand::Events { name } => {
            client
                .send(Method::GET, &format!("/v1/rollouts/{name}/events"), None)
                .await?
        }
        RolloutCommand::Status { name, runs, json } => {
            let rollout = client
                .send(Method::GET, &format!("/v1/rollouts/{name}"), None)
                .await?;
            let experiment = !rollout["experiment"].is_null();
            let what = if experiment { "experiment" } else { "analysis" };
            let status = client
                .send(
                    Method::GET,
                    &format!("/v1/rollouts/{name}/{what}?limit={runs}"),
                    None,
                )
                .await?;
            if !json {
                if experiment {
                    print!("{}", crate::experiment::table::render(&status));
                } else {
                    print!("{}", render_status(&status));
                }
                return Ok(());
            }
            status
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

#[cfg(test)]
mod tests {
    use outrider_protocol::{LATENCY_SLOTS, SCORE_DIFF_SLOTS, ShadowCounts};

    use super::*;
    use crate::shadow_report::{ShadowGate, report};

    fn rendered(counts: &ShadowCounts) -> String {
        let shadow = serde_json::to_value(report(counts, &ShadowGate::default())).unwrap();
        render_shadow(&json!({"rollout": "fraud", "shadows": [shadow]}))
    }

    #[test]
    fn the_confusion_matrix_lines_up() {
        let counts = ShadowCounts {
            variant: "v3".into(),
            mirrored: 123_470,
            completed: 123_460,
            compared: 123_460,
            confusion: [[123_400, 7], [3, 50]],
            score_diff: vec![0; SCORE_DIFF_SLOTS],
            shadow_latency_ms: vec![0; LATENCY_SLOTS],
            primary_latency_ms: vec![0; LATENCY_SLOTS],
            ..ShadowCounts::default()
        };
        let text = rendered(&counts);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.contains("labels")).unwrap();
        let table = &lines[header..header + 3];
        assert_eq!(
            table[1].split_whitespace().collect::<Vec<_>>(),
            ["primary", "0", "123400", "7"]
        );
        assert_eq!(
            table[2].split_whitespace().collect::<Vec<_>>(),
            ["primary", "1", "3", "50"]
        );
        // Every column ends where its heading ends.
        let ends = |line: &str, word: &str| line.find(word).unwrap() + word.len();
        for (column, (row, cell)) in [("shadow 0", (1, "123400")), ("shadow 1", (2, "50"))] {
            assert_eq!(ends(table[0], column), ends(table[row], cell), "{text}");
        }
        assert_eq!(ends(table[0], "shadow 1"), table[1].len(), "{text}");
        assert_eq!(table[1].len(), table[2].len(), "{text}");
    }

    #[test]
    fn a_timing_out_shadow_shows_its_share_beside_its_latency_and_score_buckets() {
        let mut counts = ShadowCounts {
            variant: "v3".into(),
            mirrored: 1_100,
            completed: 600,
            timeouts: 500,
            compared: 600,
            confusion: [[300, 0], [0, 300]],
            score_diff: vec![0; SCORE_DIFF_SLOTS],
            shadow_latency_ms: vec![0; LATENCY_SLOTS],
            primary_latency_ms: vec![0; LATENCY_SLOTS],
            ..ShadowCounts::default()
        };
        counts.score_diff[0] = 500;
        counts.score_diff[5] = 90;
        counts.score_diff[10] = 10;
        let text = rendered(&counts);
        assert!(
            text.contains("FAIL (timeout rate 0.4545 (500 of 1100 copies) is above 0.01)"),
            "{text}"
        );
        assert!(
            text.contains("ended 1100: completed 600, errors 0 (0.00%), timeouts 500 (45.45%)"),
            "{text}"
        );
        assert!(
            text.contains("over 600 answered copies (500 timed out, 45.45%, left out)"),
            "{text}"
        );
        assert!(
            text.contains("p50 [0, 0.0001]  p90 (0.02, 0.05]  p99 > 1  max > 1"),
            "{text}"
        );
    }

    #[test]
    fn gate_thresholds_are_numbers_and_counts_stay_integers() {
        assert_eq!(
            parse_gate("min_copies=200").unwrap(),
            ("min_copies".to_owned(), json!(200))
        );
        assert_eq!(
            parse_gate(" max_timeout_rate = 0.05").unwrap(),
            ("max_timeout_rate".to_owned(), json!(0.05))
        );
        let err = parse_gate("min_agreement=NaN").unwrap_err().to_string();
        assert!(err.contains("is not a number"), "{err}");
        assert!(parse_gate("min_copies").is_err());
    }

    #[test]
    fn a_plan_is_the_same_when_only_defaults_and_derived_steps_differ() {
        use crate::rollout::{Attribution, CreateRequest, Rollout};
        let spec = json!({"name": "fraud", "mode": "blue_green",
            "variants": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}],
            "blue_green": {"preview_weight": 5},
            "gates": {"confirm_promotion": {"url": "http://gate/ok"}}});
        let req: CreateRequest = serde_json::from_value(spec.clone()).unwrap();
        let existing = Rollout::create(req, &Attribution::default(), 1).unwrap().0;
        let existing = serde_json::to_value(&existing).unwrap();
        assert!(spec_differences(&spec, &existing).is_empty());
        let mut other = spec.clone();
        other["gates"]["confirm_promotion"]["url"] = json!("http://gate/other");
        other["blue_green"]["preview_weight"] = json!(10);
        other["shadow"] = json!({});
        assert_eq!(
            spec_differences(&other, &existing),
            ["shadow", "blue_green", "gates"]
        );
    }
}
