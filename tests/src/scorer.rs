//! A real `outrider-scorer serve` process on a free loopback port, stopped when
//! dropped. Tests of the scorer's package pass its binary
//! (`env!("CARGO_BIN_EXE_outrider-scorer")`).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::client::HttpClient;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const TELEMETRY_TOKEN: &str = "test-telemetry-token-0123456789";

/// How to start a scorer.
#[derive(Debug, Clone)]
pub struct ScorerSpec {
    pub binary: PathBuf,
    /// `--store`: a SQLite path or a PostgreSQL URL.
    pub store: String,
    pub replica_id: String,
    pub extra_args: Vec<String>,
}

pub struct Scorer {
    spec: ScorerSpec,
    child: Child,
    dir: TempDir,
    pub addr: SocketAddr,
}

impl Scorer {
    pub async fn start(spec: ScorerSpec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outrider-scorer-")
            .tempdir()?;
        let (child, addr) = launch(&spec, dir.path()).await?;
        Ok(Self {
            spec,
            child,
            dir,
            addr,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL): nothing gets to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same scorer again, on the same port and store.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        let mut spec = self.spec.clone();
        spec.extra_args
            .extend(["--listen".to_owned(), self.addr.to_string()]);
        let (child, addr) = launch(&spec, self.dir.path()).await?;
        self.child = child;
        self.addr = addr;
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scorer.log")).unwrap_or_default()
    }
}

async fn launch(spec: &ScorerSpec, dir: &Path) -> Result<(Child, SocketAddr)> {
    let address_file = dir.join("address");
    let _ = std::fs::remove_file(&address_file);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("scorer.log"))?;
    let listen = if spec.extra_args.iter().any(|a| a == "--listen") {
        None
    } else {
        Some("127.0.0.1:0")
    };
    let mut cmd = Command::new(&spec.binary);
    cmd.arg("serve")
        .args(["--store", &spec.store])
        .args([
            "--admin-token",
            ADMIN_TOKEN,
            "--telemetry-token",
            TELEMETRY_TOKEN,
        ])
        .args(["--replica-id", &spec.replica_id])
        .arg("--address-file")
        .arg(&address_file)
        .args(listen.map(|l| ["--listen", l]).into_iter().flatten())
        .args(&spec.extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; the scorer dies with the test process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", spec.binary.display()))?;
    let http = HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("scorer.log")).unwrap_or_default();
            bail!("the scorer exited during start ({status}):\n{log}");
        }
        if let Ok(text) = std::fs::read_to_string(&address_file)
            && let Ok(addr) = text.trim().parse::<SocketAddr>()
            && http
                .get(&format!("http://{addr}/readyz"), &[])
                .await
                .is_ok_and(|r| r.status == 200)
        {
            return Ok((child, addr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the scorer was not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Scorer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- scorer {} log (last 40 lines) ---\n{}",
                self.spec.replica_id,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
