//! A private Alertmanager for one test: Debian's `prometheus-alertmanager` on a free
//! loopback port, with its data in a temporary folder, clustering off, stopped when
//! dropped (`make setup` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::client::HttpClient;

pub struct Alertmanager {
    child: Child,
    _dir: TempDir,
    pub url: String,
}

const BINARY: &str = "prometheus-alertmanager";

/// Routes everything to a receiver that sends nothing: the test reads the API.
const CONFIG: &str = "\
route:
  receiver: 'null'
  group_wait: 0s
receivers:
  - name: 'null'
";

impl Alertmanager {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("outrider-am-").tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {BINARY} (run `make setup`, which installs Debian's prometheus-alertmanager)")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let am = Self {
            child,
            _dir: dir,
            url,
        };
        let client = HttpClient::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = client.get(&format!("{}/-/ready", am.url), &[]).await
                && reply.status == 200
            {
                return Ok(am);
            }
            if Instant::now() > deadline {
                bail!("Alertmanager did not become ready on {}", am.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The alerts Alertmanager holds as active (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        let reply = HttpClient::new()
            .get(
                &format!(
                    "{}/api/v2/alerts?active=true&silenced=false&inhibited=false",
                    self.url
                ),
                &[],
            )
            .await?;
        let value = reply.json()?;
        Ok(value.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names in the scorer's `alerts::NAMES`, read from its source (this crate does not
/// link the scorer): every alert the scorer raises itself.
pub fn scorer_alert_names() -> Vec<String> {
    let src =
        std::fs::read_to_string(crate::paths::repo_root().join("sidecar-scorer/src/alerts.rs"))
            .unwrap_or_default();
    let Some(start) = src.find("pub const NAMES") else {
        return Vec::new();
    };
    let end = src[start..].find("];").map_or(src.len(), |e| start + e);
    src[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
