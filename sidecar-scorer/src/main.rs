//! `outrider-scorer`: the scorer's command line.

use clap::{Parser, Subcommand, ValueEnum};
use outrider_scorer::stats::{self, Analysis};
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "outrider-scorer", version, about = "outrider sidecar scorer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a statistical analysis: one JSON request on stdin, one JSON report
    /// on stdout. Invalid input exits with status 2 and a JSON error.
    Stats {
        #[arg(value_enum)]
        analysis: StatsKind,
    },
    /// The fraud model: generate data, train and register, serve (Open
    /// Inference Protocol over REST and gRPC), batch-score.
    Model(outrider_model::cli::ModelArgs),
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
        Command::Stats { analysis } => {
            let analysis = match analysis {
                StatsKind::Ab => Analysis::Ab,
                StatsKind::Drift => Analysis::Drift,
                StatsKind::Judge => Analysis::Judge,
                StatsKind::Power => Analysis::Power,
            };
            run_stats(analysis)
        }
        Command::Model(args) => outrider_model::cli::run(args),
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
