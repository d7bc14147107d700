//! `outrider-scorer`: the scorer service and its command line.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use outrider_scorer::client::{self, Connection, RolloutCommand, ShadowCommand};
use outrider_scorer::config::{LogFormat, ServeArgs, ServeConfig};
use outrider_scorer::retrain::cli::{self as retrain_cli, RetrainCommand};
use outrider_scorer::server;
use outrider_scorer::stats::{self, Analysis};

#[derive(Parser)]
#[command(
    name = "outrider-scorer",
    version,
    about = "outrider sidecar scorer: rollouts, telemetry, statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scorer service (HTTP API v1, rollout decisions).
    Serve(Box<ServeArgs>),
    /// Inspect and change rollouts on a running scorer.
    Rollout {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Shadow variants of a rollout on a running scorer.
    Shadow {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// A model's retraining on a running scorer: its policy, starting a job, the jobs.
    Retrain {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: RetrainCommand,
    },
    /// Run a retraining job's command as the leader of its process group, and kill the
    /// group when the scorer that started it dies (used by the scorer itself).
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        parent: u32,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a statistical analysis: one JSON request on stdin, one JSON report
    /// on stdout. Invalid input exits with status 2 and a JSON error.
    Stats {
        #[arg(value_enum)]
        analysis: StatsKind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StatsKind {
    /// A/B significance, SRM and chance to beat control
    Ab,
    /// Drift of a current sample against a reference
    Drift,
    /// Canary judgment (Kayenta rules)
    Judge,
    /// Sample size per arm for a minimum detectable effect
    Power,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Rollout {
            connection,
            command,
        } => runtime_then(|| client::run(connection, command)),
        Command::Shadow {
            connection,
            command,
        } => runtime_then(|| client::run_shadow(connection, command)),
        Command::Retrain {
            connection,
            command,
        } => runtime_then(|| retrain_cli::run(connection, command)),
        Command::Supervise { parent, command } => {
            outrider_scorer::retrain::supervise::run(parent, &command)
        }
        Command::Stats { analysis } => {
            let analysis = match analysis {
                StatsKind::Ab => Analysis::Ab,
                StatsKind::Drift => Analysis::Drift,
                StatsKind::Judge => Analysis::Judge,
                StatsKind::Power => Analysis::Power,
            };
            run_stats(analysis)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match ServeConfig::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outrider-scorer: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    runtime_then(|| server::serve(config))
}

fn runtime_then<F: std::future::Future<Output = anyhow::Result<()>>>(
    work: impl FnOnce() -> F,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("outrider-scorer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outrider-scorer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_stats(analysis: Analysis) -> ExitCode {
    let mut body = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut body) {
        eprintln!("outrider-scorer: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let (text, code) = match stats::run(analysis, &body) {
        Ok(report) => (report, ExitCode::SUCCESS),
        Err(err) => (stats::error_body(&err), ExitCode::from(2)),
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        return ExitCode::FAILURE;
    }
    code
}
