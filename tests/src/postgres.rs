//! A private PostgreSQL server for one test: `initdb` into a temporary folder and
//! `pg_ctl start` on a free loopback port, stopped when dropped. PostgreSQL refuses
//! to run as root, so as root it runs as the `postgres` user that Debian's package
//! creates (`make setup` installs it).

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

/// The newest server binaries Debian installed (`/usr/lib/postgresql/<version>/bin`).
fn binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OUTRIDER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL is not installed (run `make setup`, which installs Debian's postgresql)",
        )?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `(uid, gid)` of the `postgres` user.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres"))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
        })
        .context("no `postgres` user (install Debian's postgresql package)")
}

fn run(bin: &Path, tool: &str, args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    let output = cmd
        .args(args)
        .current_dir("/")
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !output.status.success() {
        bail!(
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    pub async fn start() -> Result<Self> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new().prefix("outrider-pg-").tempdir()?;
        if is_root() {
            let (uid, gid) = postgres_user()?;
            chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let data_arg = data.display().to_string();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_arg,
                "-U",
                "outrider",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let socket_dir = dir.path().display().to_string();
        let options = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        );
        let log = dir.path().join("postgres.log").display().to_string();
        run(
            &bin,
            "pg_ctl",
            &["-D", &data_arg, "-o", &options, "-l", &log, "-w", "start"],
        )?;
        Ok(Self { dir, bin, port })
    }

    pub fn url(&self) -> String {
        format!("postgres://outrider@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "stop"],
        );
    }
}
