//! A private MLflow tracking server for one test: the venv's `mlflow server`
//! on a free loopback port, with a SQLite backend and an artifact folder in a
//! temporary directory, stopped (with its workers) when dropped.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::repo_root;

const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct MlflowServer {
    child: Child,
    pub url: String,
    dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl MlflowServer {
    pub async fn start() -> Self {
        let mlflow = repo_root().join(".venv/bin/mlflow");
        assert!(
            mlflow.exists(),
            "{} not found: run `make setup` (it installs the pinned MLflow into the venv)",
            mlflow.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("outrider-mlflow-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("mlflow.log")).unwrap();
        let mut command = Command::new(&mlflow);
        command
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .current_dir(dir.path())
            .env("MLFLOW_TRACKING_URI", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so the server and its workers stop together.
            .process_group(0);
        // SAFETY: prctl between fork and exec, on no shared memory.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("mlflow server starts");
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        server.wait_healthy().await;
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mlflow.log")).unwrap_or_default()
    }

    async fn wait_healthy(&mut self) {
        let http = super::Http::new(self.url.trim_start_matches("http://").parse().unwrap());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not healthy after {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            let probe = tokio::time::timeout(Duration::from_secs(2), http.try_get("/health")).await;
            if let Ok(Some(reply)) = probe
                && reply.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: signalling the process group this test started.
        unsafe {
            libc::kill(group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever is left of the group.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- mlflow log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
