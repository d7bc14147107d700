//! `outrider-scorer serve` settings: a TOML file, overridden by environment variables,
//! overridden by flags (clap reads both; the file fills what neither set).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::monitor::settings::MonitorSettings;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";
pub const DEFAULT_STORE: &str = "outrider-scorer.db";
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_WINDOW_SECONDS: u64 = 10;
pub const DEFAULT_WORKER_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_RUNBOOK_URL: &str = "docs/runbook.md";

/// Flag values if given, else the file's; each an http(s) URL.
fn urls(name: &str, flags: Vec<String>, file: Vec<String>) -> Result<Vec<String>> {
    let urls = if flags.is_empty() { file } else { flags };
    for url in &urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{name} must be an http:// or https:// URL, got `{url}`");
        }
    }
    Ok(urls
        .into_iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `serve`; each also reads an environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g.
    /// `listen = "0.0.0.0:8750"`); flags and environment variables take precedence.
    #[arg(long, env = "OUTRIDER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve the API on; port 0 picks a free port (see --address-file).
    /// [default: 127.0.0.1:8750]
    #[arg(long, env = "OUTRIDER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where state is kept: a SQLite file path (`sqlite:` prefix optional) or a
    /// `postgres://user:pass@host/db` URL shared by several replicas.
    /// [default: outrider-scorer.db]
    #[arg(long, env = "OUTRIDER_STORE")]
    pub store: Option<String>,
    /// Bearer token for changing rollouts. A random one is made and logged if unset.
    #[arg(long, env = "OUTRIDER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bearer token the filters send with telemetry. A random one is made and logged
    /// if unset.
    #[arg(long, env = "OUTRIDER_TELEMETRY_TOKEN", hide_env_values = true)]
    pub telemetry_token: Option<String>,
    /// Bearer token for posting feedback (outcome labels); the admin token also works.
    #[arg(long, env = "OUTRIDER_FEEDBACK_TOKEN", hide_env_values = true)]
    pub feedback_token: Option<String>,
    /// Largest request body accepted; larger ones get 413. [default: 4194304]
    #[arg(long, env = "OUTRIDER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Length of the telemetry aggregation windows, in seconds. [default: 10]
    #[arg(long, env = "OUTRIDER_WINDOW_SECONDS")]
    pub window_seconds: Option<u64>,
    /// A filter worker whose telemetry has not arrived for this long is forgotten:
    /// windows stop waiting for it to be complete. [default: 30]
    #[arg(long, env = "OUTRIDER_WORKER_TIMEOUT_SECONDS")]
    pub worker_timeout_seconds: Option<u64>,
    /// Alertmanager to send alerts to (`http://host:9093`); repeat, or separate
    /// with commas, for several.
    #[arg(
        long = "alertmanager-url",
        env = "OUTRIDER_ALERTMANAGER_URL",
        value_delimiter = ','
    )]
    pub alertmanager_urls: Vec<String>,
    /// A webhook that takes Alertmanager's webhook format (version 4) for each alert
    /// that fires or resolves; repeat, or separate with commas, for several.
    #[arg(
        long = "alert-webhook-url",
        env = "OUTRIDER_ALERT_WEBHOOK_URL",
        value_delimiter = ','
    )]
    pub alert_webhook_urls: Vec<String>,
    /// Prometheus that `prometheus` analysis checks query (`http://host:9090`) unless
    /// a check names its own `address`.
    #[arg(long, env = "OUTRIDER_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// The model registry (a folder of the embedded registry, or an MLflow tracking
    /// URI `http://host:5000`), as `outrider-model --registry`. The model monitor reads
    /// each watched version's reference profile from it (without it monitoring is
    /// off); retraining registers versions there.
    #[arg(long, env = "OUTRIDER_REGISTRY")]
    pub registry: Option<String>,
    /// The trainer retraining jobs run by default. [default: `outrider-model` beside
    /// this program, else on the PATH]
    #[arg(long, env = "OUTRIDER_MODEL_BINARY")]
    pub model_binary: Option<PathBuf>,
    /// Where retraining jobs keep their data and output. [default: a folder in the
    /// system's temporary directory]
    #[arg(long, env = "OUTRIDER_JOBS_DIR")]
    pub jobs_dir: Option<PathBuf>,
    /// Where the runbook is; each alert links to its section (`<url>#<alert name>`).
    /// [default: docs/runbook.md]
    #[arg(long, env = "OUTRIDER_RUNBOOK_URL")]
    pub runbook_url: Option<String>,
    /// This scorer's URL as people reach it, for the alerts' links. [default:
    /// http://<listen>]
    #[arg(long, env = "OUTRIDER_EXTERNAL_URL")]
    pub external_url: Option<String>,
    /// Log lines as text or JSON. [default: text]
    #[arg(long, env = "OUTRIDER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Name of this replica in events and logs. [default: host name and process id]
    #[arg(long, env = "OUTRIDER_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Write the address the API listens on to this file once it is ready.
    #[arg(long)]
    pub address_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    store: Option<String>,
    admin_token: Option<String>,
    telemetry_token: Option<String>,
    feedback_token: Option<String>,
    max_body_bytes: Option<usize>,
    window_seconds: Option<u64>,
    worker_timeout_seconds: Option<u64>,
    #[serde(default)]
    alertmanager_urls: Vec<String>,
    #[serde(default)]
    alert_webhook_urls: Vec<String>,
    prometheus_url: Option<String>,
    registry: Option<String>,
    model_binary: Option<PathBuf>,
    jobs_dir: Option<PathBuf>,
    #[serde(default)]
    monitor: MonitorSettings,
    runbook_url: Option<String>,
    external_url: Option<String>,
    log_format: Option<LogFormat>,
    replica_id: Option<String>,
}

/// Settings with every default filled in.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: String,
    pub admin_token: String,
    pub telemetry_token: String,
    pub feedback_token: Option<String>,
    pub max_body_bytes: usize,
    pub window_ms: u64,
    pub worker_timeout_ms: u64,
    pub alertmanager_urls: Vec<String>,
    pub alert_webhook_urls: Vec<String>,
    /// Where `prometheus` checks without an `address` of their own send their queries.
    pub prometheus_url: Option<String>,
    /// The model registry the monitor and retraining use.
    pub registry: Option<String>,
    pub model_binary: PathBuf,
    pub jobs_dir: PathBuf,
    /// The `[monitor]` table of the file.
    pub monitor: MonitorSettings,
    pub runbook_url: String,
    pub external_url: String,
    pub log_format: LogFormat,
    pub replica_id: String,
    pub address_file: Option<PathBuf>,
    /// Tokens that were made up because none was configured (to log once).
    pub generated_tokens: Vec<&'static str>,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("{} is not a valid configuration", path.display()))
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut generated_tokens = Vec::new();
        let mut token = |flag: Option<String>,
                         file: Option<String>,
                         name: &'static str|
         -> Result<String> {
            match flag.or(file) {
                Some(t) if t.len() < 16 => bail!("the {name} must be at least 16 characters long"),
                Some(t) => Ok(t),
                None => {
                    generated_tokens.push(name);
                    random_token()
                }
            }
        };
        let admin_token = token(args.admin_token, file.admin_token, "admin token")?;
        let telemetry_token = token(
            args.telemetry_token,
            file.telemetry_token,
            "telemetry token",
        )?;
        let feedback_token = args.feedback_token.or(file.feedback_token);
        let window_seconds = args
            .window_seconds
            .or(file.window_seconds)
            .unwrap_or(DEFAULT_WINDOW_SECONDS);
        if window_seconds == 0 || window_seconds > 3600 {
            bail!("window_seconds must be between 1 and 3600, got {window_seconds}");
        }
        let worker_timeout_seconds = args
            .worker_timeout_seconds
            .or(file.worker_timeout_seconds)
            .unwrap_or(DEFAULT_WORKER_TIMEOUT_SECONDS);
        if worker_timeout_seconds == 0 || worker_timeout_seconds > 86_400 {
            bail!(
                "worker_timeout_seconds must be between 1 and 86400, got {worker_timeout_seconds}"
            );
        }
        file.monitor.validate().map_err(anyhow::Error::msg)?;
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse()?,
        };
        Ok(Self {
            listen,
            store: args
                .store
                .or(file.store)
                .unwrap_or_else(|| DEFAULT_STORE.to_owned()),
            admin_token,
            telemetry_token,
            feedback_token,
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            window_ms: window_seconds * 1000,
            worker_timeout_ms: worker_timeout_seconds * 1000,
            alertmanager_urls: urls(
                "alertmanager_url",
                args.alertmanager_urls,
                file.alertmanager_urls,
            )?,
            alert_webhook_urls: urls(
                "alert_webhook_url",
                args.alert_webhook_urls,
                file.alert_webhook_urls,
            )?,
            prometheus_url: urls(
                "prometheus_url",
                args.prometheus_url.into_iter().collect(),
                file.prometheus_url.into_iter().collect(),
            )?
            .pop(),
            registry: args.registry.or(file.registry),
            model_binary: args
                .model_binary
                .or(file.model_binary)
                .unwrap_or_else(default_model_binary),
            jobs_dir: args
                .jobs_dir
                .or(file.jobs_dir)
                .unwrap_or_else(|| std::env::temp_dir().join("outrider-jobs")),
            monitor: file.monitor,
            runbook_url: args
                .runbook_url
                .or(file.runbook_url)
                .unwrap_or_else(|| DEFAULT_RUNBOOK_URL.to_owned()),
            external_url: args
                .external_url
                .or(file.external_url)
                .unwrap_or_else(|| format!("http://{listen}")),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            replica_id: args
                .replica_id
                .or(file.replica_id)
                .unwrap_or_else(default_replica_id),
            address_file: args.address_file,
            generated_tokens,
        })
    }
}

/// `outrider-model` beside this program (as built and as installed together), else
/// the name alone, looked up on the PATH when a job runs.
fn default_model_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("outrider-model")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("outrider-model"))
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scorer.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nwindow_seconds = 5\nadmin_token = \"from-the-file-0123456789\"\nprometheus_url = \"http://prometheus:9090/\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.window_ms, 5_000);
        assert_eq!(config.admin_token, "from-the-file-0123456789");
        assert_eq!(config.store, DEFAULT_STORE);
        assert_eq!(config.generated_tokens, vec!["telemetry token"]);
        assert_eq!(config.telemetry_token.len(), 48);
        assert_eq!(
            config.prometheus_url.as_deref(),
            Some("http://prometheus:9090")
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scorer.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err = ServeConfig::resolve(ServeArgs {
            admin_token: Some("short".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("at least 16"));
        let err = ServeConfig::resolve(ServeArgs {
            window_seconds: Some(0),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("window_seconds"));
        let err = ServeConfig::resolve(ServeArgs {
            prometheus_url: Some("prometheus:9090".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("prometheus_url"), "{err}");
        std::fs::write(&path, "[monitor]\nmin_samples = 0\n").unwrap();
        let err = ServeConfig::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("monitor.min_samples"), "{err}");
        std::fs::write(
            &path,
            "registry = \"/tmp/r\"\n[monitor.window]\nby = \"count\"\nwidth = 300\n",
        )
        .unwrap();
        let config = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.registry.as_deref(), Some("/tmp/r"));
        assert_eq!(config.monitor.window.width, 300);
    }
}
