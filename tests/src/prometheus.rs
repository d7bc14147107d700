//! A private Prometheus for one test: Debian's `prometheus` on a loopback port, its
//! configuration and TSDB in a temporary folder, scraping the given targets every
//! second (and evaluating the given rule files as often), stopped when dropped
//! (`make setup` installs it).
//!
//! A process that must know Prometheus' URL before Prometheus starts (a scorer with
//! `--prometheus-url`, while Prometheus scrapes the Envoy linked to that scorer) gets
//! a port from [`free_port`] first and passes it in [`PrometheusSpec::port`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::client::HttpClient;

const BINARY: &str = "prometheus";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Something to scrape.
#[derive(Debug, Clone)]
pub struct Target {
    /// The scrape job, and the `job` label of its series.
    pub job: String,
    pub address: SocketAddr,
    pub metrics_path: String,
}

impl Target {
    /// Envoy's admin API (`Envoy::admin_addr`): the filter's stats with their labels.
    pub fn envoy(job: &str, admin: SocketAddr) -> Self {
        Self::new(job, admin, "/stats/prometheus")
    }

    /// A scorer's own metrics.
    pub fn scorer(job: &str, addr: SocketAddr) -> Self {
        Self::new(job, addr, "/metrics")
    }

    pub fn new(job: &str, address: SocketAddr, metrics_path: &str) -> Self {
        Self {
            job: job.to_owned(),
            address,
            metrics_path: metrics_path.to_owned(),
        }
    }
}

/// How to start a Prometheus.
#[derive(Debug, Clone, Default)]
pub struct PrometheusSpec {
    pub targets: Vec<Target>,
    /// Alerting and recording rule files, as Prometheus' `rule_files` takes them.
    pub rule_files: Vec<PathBuf>,
    /// A port taken with [`free_port`] beforehand; a free one otherwise.
    pub port: Option<u16>,
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub struct Prometheus {
    child: Child,
    dir: TempDir,
    pub url: String,
    http: HttpClient,
}

/// A loopback port free now (another process could take it before it is used).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The configuration file: every target its own job, everything each second.
fn config(spec: &PrometheusSpec) -> String {
    // JSON strings are YAML strings: paths and names need no escaping of their own.
    let quoted = |s: &str| Value::from(s).to_string();
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    yaml.push_str(if spec.rule_files.is_empty() {
        "rule_files: []\n"
    } else {
        "rule_files:\n"
    });
    for file in &spec.rule_files {
        let _ = writeln!(yaml, "  - {}", quoted(&file.display().to_string()));
    }
    yaml.push_str(if spec.targets.is_empty() {
        "scrape_configs: []\n"
    } else {
        "scrape_configs:\n"
    });
    for t in &spec.targets {
        let _ = write!(
            yaml,
            "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
            quoted(&t.job),
            quoted(&t.metrics_path),
            quoted(&t.address.to_string())
        );
    }
    yaml
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready (`/-/ready`).
    pub async fn start(spec: PrometheusSpec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outrider-prometheus-")
            .tempdir()?;
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config(&spec))?;
        let port = match spec.port {
            Some(p) => p,
            None => free_port()?,
        };
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let mut cmd = Command::new(BINARY);
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; Prometheus dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!("starting {BINARY} (run `make setup`, which installs Debian's prometheus)")
        })?;
        let mut prometheus = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: HttpClient::new(),
        };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited during start ({status}):\n{}", self.log());
            }
            if let Ok(reply) = self.http.get(&format!("{}/-/ready", self.url), &[]).await
                && reply.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus was not ready on {} after {START_TIMEOUT:?}",
                    self.url
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query evaluated now: the series of its vector (a scalar as one
    /// series without labels).
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let url = format!("{}/api/v1/query?query={}", self.url, encode(promql));
        let reply = self.http.get(&url, &[]).await?;
        let body = reply
            .json()
            .with_context(|| format!("query `{promql}`: answer {}", reply.status))?;
        if body["status"] != "success" {
            bail!(
                "query `{promql}`: {} {}: {}",
                reply.status,
                body["errorType"],
                body["error"]
            );
        }
        samples(&body["data"])
    }

    /// Waits until the job's first scrape has succeeded (its target is `up`).
    pub async fn wait_scraped(&self, job: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("not among the targets");
        loop {
            let reply = self
                .http
                .get(&format!("{}/api/v1/targets?state=active", self.url), &[])
                .await?;
            let targets = reply.json()?;
            let target = targets["data"]["activeTargets"]
                .as_array()
                .and_then(|all| all.iter().find(|t| t["labels"]["job"] == job));
            if let Some(t) = target {
                if t["health"] == "up" {
                    return Ok(());
                }
                last = format!("{}, last error: {}", t["health"], t["lastError"]);
            }
            if Instant::now() > deadline {
                bail!("job `{job}` not scraped after {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

/// The series of a query's `data`.
fn samples(data: &Value) -> Result<Vec<Sample>> {
    let value = |pair: &Value| -> Result<f64> {
        let text = pair[1].as_str().context("a sample without a value")?;
        Ok(match text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => text.parse()?,
        })
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: value(&data["result"])?,
        }]),
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                Ok(Sample {
                    labels,
                    value: value(&s["value"])?,
                })
            })
            .collect(),
        other => bail!("an instant query gave {other:?}, not a vector or a scalar"),
    }
}

/// `text` as a URL query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- prometheus log (last 20 lines) ---\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_every_target_and_rule_file() {
        let spec = PrometheusSpec {
            targets: vec![
                Target::envoy("envoy", "127.0.0.1:9901".parse().unwrap()),
                Target::scorer("scorer", "127.0.0.1:8750".parse().unwrap()),
            ],
            rule_files: vec![PathBuf::from("/tmp/rules.yml")],
            port: None,
        };
        let yaml = config(&spec);
        assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");
        assert!(yaml.contains("  - \"/tmp/rules.yml\"\n"), "{yaml}");
        assert!(
            yaml.contains("  - job_name: \"envoy\"\n    metrics_path: \"/stats/prometheus\"\n    static_configs:\n      - targets: [\"127.0.0.1:9901\"]\n"),
            "{yaml}"
        );
        assert!(yaml.contains("metrics_path: \"/metrics\""), "{yaml}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode(r#"sum(x{a="b"}[5s])"#),
            "sum%28x%7Ba%3D%22b%22%7D%5B5s%5D%29"
        );
    }

    #[test]
    fn vectors_and_scalars_are_read() {
        let vector = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"job": "envoy"}, "value": [1.5, "0.25"]},
            {"metric": {}, "value": [1.5, "NaN"]}]});
        let got = samples(&vector).unwrap();
        assert_eq!(got[0].labels["job"], "envoy");
        assert_eq!(got[0].value, 0.25);
        assert!(got[1].value.is_nan());
        let scalar = serde_json::json!({"resultType": "scalar", "result": [1.5, "3"]});
        assert_eq!(samples(&scalar).unwrap()[0].value, 3.0);
        let matrix = serde_json::json!({"resultType": "matrix", "result": []});
        assert!(samples(&matrix).is_err());
    }
}
