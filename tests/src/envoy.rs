//! A real Envoy process: started from a bootstrap on free loopback ports, stopped
//! when dropped (also when a test fails), and reachable through its admin API.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::client::HttpClient;
use crate::paths;
use crate::prom::Metrics;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the filter's counters may take to reach Envoy's: it keeps them in the
/// worker and adds them on its tick, every `COUNTER_FLUSH_MS` (a tick is at most as
/// long again).
pub const COUNTERS_SETTLE: Duration =
    Duration::from_millis(2 * outrider_filter_logic::stats::COUNTER_FLUSH_MS + 100);

pub struct Envoy {
    child: Child,
    dir: TempDir,
    admin: SocketAddr,
    http: HttpClient,
}

/// How an Envoy that was expected to refuse its configuration ended.
pub struct Refusal {
    pub status: ExitStatus,
    pub log: String,
}

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct Launch {
    pub concurrency: u32,
    pub env: Vec<(String, String)>,
    /// Pin every Envoy thread to this CPU (benchmarks keep their load off it).
    pub cpu: Option<usize>,
    /// Run Envoy under valgrind's callgrind, its profile written to this file (a dump
    /// `N` goes to `<file>.N`): instructions are counted, whatever the machine is doing.
    pub callgrind: Option<PathBuf>,
}

impl Launch {
    pub fn workers(concurrency: u32) -> Self {
        Self {
            concurrency,
            env: Vec::new(),
            cpu: None,
            callgrind: None,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }
}

fn command(bootstrap: &Path, dir: &Path, launch: &Launch) -> Result<Command> {
    let mut cmd = match &launch.callgrind {
        None => Command::new(paths::envoy_binary()?),
        Some(out) => {
            let mut valgrind = Command::new("valgrind");
            valgrind
                // V8 writes the machine code of the wasm filters at run time.
                .args(["--tool=callgrind", "--smc-check=all-non-file"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(paths::envoy_executable()?);
            valgrind
        }
    };
    // Committed configs name the .wasm files relative to the repository root.
    cmd.current_dir(paths::repo_root())
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .arg("-c")
        .arg(bootstrap)
        .args(["--concurrency", &launch.concurrency.to_string()])
        .arg("--admin-address-path")
        .arg(dir.join("admin-address"))
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .args(["-l", "info", "--disable-hot-restart", "--drain-time-s", "1"])
        // Log lines reach the file within 100 ms (tests read it while Envoy runs).
        .args(["--file-flush-interval-msec", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cpu = launch.cpu;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl,
    // sched_setaffinity) on memory owned by this closure.
    unsafe {
        cmd.pre_exec(move || {
            // If the harness itself dies, Envoy goes with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(cpu) = cpu {
                crate::load::pin_to_cpu(cpu)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

fn write_bootstrap(dir: &Path, bootstrap: &Value) -> Result<PathBuf> {
    // JSON is YAML, and Envoy reads `.yaml` bootstraps.
    let path = dir.join("bootstrap.yaml");
    std::fs::write(&path, serde_json::to_vec_pretty(bootstrap)?)?;
    Ok(path)
}

impl Envoy {
    /// Starts Envoy with a bootstrap built in code and waits until it is live.
    pub async fn start(bootstrap: &Value, concurrency: u32) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outrider-envoy-")
            .tempdir()?;
        let path = write_bootstrap(dir.path(), bootstrap)?;
        Self::start_in(dir, &path, &Launch::workers(concurrency)).await
    }

    /// Starts Envoy with a bootstrap file (for example one of `envoy/`).
    pub async fn start_file(bootstrap: &Path, launch: &Launch) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outrider-envoy-")
            .tempdir()?;
        Self::start_in(dir, bootstrap, launch).await
    }

    async fn start_in(dir: TempDir, bootstrap: &Path, launch: &Launch) -> Result<Self> {
        let child = command(bootstrap, dir.path(), launch)?
            .spawn()
            .context("cannot start envoy")?;
        let mut envoy = Self {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            http: HttpClient::new(),
        };
        // Under valgrind, Envoy takes many times longer to start.
        let timeout = if launch.callgrind.is_some() {
            START_TIMEOUT * 10
        } else {
            START_TIMEOUT
        };
        envoy.wait_live(timeout).await?;
        Ok(envoy)
    }

    /// Under callgrind: starts counting afresh.
    pub fn callgrind_zero(&self) -> Result<()> {
        self.callgrind_control("-z")
    }

    /// Under callgrind: writes the counts since the last zero to a new dump file.
    pub fn callgrind_dump(&self) -> Result<()> {
        self.callgrind_control("-d")
    }

    fn callgrind_control(&self, what: &str) -> Result<()> {
        let status = Command::new("callgrind_control")
            .arg(what)
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .status()
            .context("callgrind_control (Debian package valgrind)")?;
        if !status.success() {
            bail!("callgrind_control {what} failed: {status}");
        }
        Ok(())
    }

    /// Runs Envoy on a bootstrap it should refuse, and returns how it ended.
    pub async fn expect_refusal(bootstrap: &Value) -> Result<Refusal> {
        let dir = tempfile::Builder::new()
            .prefix("outrider-envoy-")
            .tempdir()?;
        let path = write_bootstrap(dir.path(), bootstrap)?;
        let mut child = command(&path, dir.path(), &Launch::workers(1))?.spawn()?;
        let http = HttpClient::new();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
                return Ok(Refusal { status, log });
            }
            let live = match std::fs::read_to_string(dir.path().join("admin-address")) {
                Ok(admin) => http
                    .get(&format!("http://{}/ready", admin.trim()), &[])
                    .await
                    .is_ok_and(|r| r.status == 200),
                Err(_) => false,
            };
            if live || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("envoy accepted a bootstrap it should have refused");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `envoy --mode validate` on a bootstrap file (which also configures the
    /// wasm filters, so an invalid filter configuration fails it).
    pub fn validate(bootstrap: &Path, env: &[(&str, &str)]) -> Result<String> {
        let output = Command::new(paths::envoy_binary()?)
            .envs(env.iter().copied())
            .args(["--mode", "validate", "-c"])
            .arg(bootstrap)
            .current_dir(paths::repo_root())
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("{} does not validate:\n{text}", bootstrap.display());
        }
        Ok(text)
    }

    async fn wait_live(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let address_file = self.dir.path().join("admin-address");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited during start ({status}):\n{}",
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy was not live after {START_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                );
            }
            if let Ok(text) = std::fs::read_to_string(&address_file)
                && let Ok(addr) = text.trim().parse()
            {
                self.admin = addr;
                if let Ok(reply) = self
                    .http
                    .get(&format!("{}/ready", self.admin_url()), &[])
                    .await
                    && reply.status == 200
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Scratch directory of this Envoy (bootstrap, log, LDS files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Where the admin API listens (for a Prometheus scraping `/stats/prometheus`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The address a listener is bound to (bootstraps ask for port 0).
    pub async fn listener(&self, name: &str) -> Result<SocketAddr> {
        let reply = self
            .http
            .get(&format!("{}/listeners?format=json", self.admin_url()), &[])
            .await?;
        let listeners: Value = serde_json::from_slice(&reply.body)?;
        let status = listeners["listener_statuses"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["name"] == name))
            .ok_or_else(|| anyhow!("no listener `{name}`: {listeners}"))?;
        let socket = &status["local_address"]["socket_address"];
        let ip = socket["address"].as_str().context("listener address")?;
        let port = socket["port_value"].as_u64().context("listener port")?;
        Ok(format!("{ip}:{port}").parse()?)
    }

    /// The base URL of a listener, e.g. `http://127.0.0.1:40123`.
    pub async fn url(&self, listener: &str) -> Result<String> {
        Ok(format!("http://{}", self.listener(listener).await?))
    }

    pub async fn admin_get(&self, path: &str) -> Result<String> {
        let reply = self
            .http
            .get(&format!("{}{path}", self.admin_url()), &[])
            .await?;
        if reply.status != 200 {
            bail!("admin {path}: status {}", reply.status);
        }
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    /// Everything in `/stats/prometheus`, once the filter's counters of what happened
    /// so far have reached Envoy.
    pub async fn prometheus(&self) -> Result<Metrics> {
        tokio::time::sleep(COUNTERS_SETTLE).await;
        Ok(Metrics::parse(&self.admin_get("/stats/prometheus").await?))
    }

    /// A counter of `/stats`, once the filter's counts of what happened so far have
    /// reached it.
    pub async fn counter(&self, name: &str) -> Result<u64> {
        tokio::time::sleep(COUNTERS_SETTLE).await;
        self.stat(name).await
    }

    /// One counter or gauge of `/stats` by its full name (0 when absent).
    pub async fn stat(&self, name: &str) -> Result<u64> {
        let text = self
            .admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .await?;
        Ok(text
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0))
    }

    /// Waits until a stat reaches at least `value`.
    pub async fn wait_stat(&self, name: &str, value: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.stat(name).await?;
            if now >= value {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} is {now} after {timeout:?}, expected {value}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops Envoy (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- envoy log (last 60 lines) ---\n{}", self.log_tail(60));
        }
        self.stop();
    }
}
