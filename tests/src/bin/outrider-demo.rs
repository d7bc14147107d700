//! `make demo`: the fraud model trained, served behind Envoy and the outrider filter,
//! watched for drift, retrained, shadowed, canaried and promoted, and a broken build
//! rolled back by the guardrail; a live view, then an HTML report
//! (`target/demo/report.html`). The phases are described in `tests/src/demo/mod.rs` and
//! docs/demo.md.

#[path = "../demo/mod.rs"]
mod demo;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Runs the whole lifecycle of the fraud model on this machine and writes a report.
#[derive(Parser)]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of undrifted traffic before the drift starts.
    #[arg(long, default_value_t = 30)]
    calm_seconds: u64,
    /// Seconds of traffic after the rollback of v3.
    #[arg(long, default_value_t = 8)]
    tail_seconds: u64,
    /// Transactions v1 is trained on.
    #[arg(long, default_value_t = 40_000)]
    train_rows: usize,
    /// Share of fraudulent transactions in the traffic.
    #[arg(long, default_value_t = 0.02)]
    fraud_rate: f64,
    /// The drift: every amount multiplied by this ...
    #[arg(long, default_value_t = 2.0)]
    amount_scale: f64,
    /// ... and this share of transactions at a merchant category never seen.
    #[arg(long, default_value_t = 0.1)]
    new_category_share: f64,
    /// Seconds after a request its outcome label is posted.
    #[arg(long, default_value_t = 3)]
    label_delay_seconds: u64,
    /// Copies (and comparisons) the shadow stage needs.
    #[arg(long, default_value_t = 500)]
    shadow_copies: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 420)]
    max_seconds: u64,
    /// A shorter run (for CI): 12 s of calm, v1 trained on 10,000 rows, a short tail.
    #[arg(long)]
    quick: bool,
    /// Where the report and the run's files go (default: target/demo).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where outrider-scorer and outrider-model are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe()?;
    let bin_dir = args
        .bin_dir
        .or_else(|| exe.parent().map(PathBuf::from))
        .unwrap_or_default();
    let out = args
        .out
        .unwrap_or_else(|| outrider_harness::paths::repo_root().join("target/demo"));
    let mut settings = demo::Settings {
        rate: args.rate,
        calm_seconds: args.calm_seconds,
        tail_seconds: args.tail_seconds,
        train_rows: args.train_rows,
        fraud_rate: args.fraud_rate,
        amount_scale: args.amount_scale,
        new_category_share: args.new_category_share,
        label_delay_seconds: args.label_delay_seconds,
        shadow_copies: args.shadow_copies,
        max_seconds: args.max_seconds,
        bin_dir,
        out,
    };
    if args.quick {
        settings.calm_seconds = settings.calm_seconds.min(12);
        settings.tail_seconds = settings.tail_seconds.min(4);
        settings.train_rows = settings.train_rows.min(10_000);
        settings.shadow_copies = settings.shadow_copies.min(300);
    }
    for binary in ["outrider-scorer", "outrider-model"] {
        let path = settings.bin_dir.join(binary);
        anyhow::ensure!(
            path.is_file(),
            "{} not found: run `make build` (or pass --bin-dir)",
            path.display()
        );
    }
    println!(
        "outrider demo: the fraud model trained, served behind Envoy 1.40 and the outrider filter, watched, retrained and rolled out"
    );
    let report = demo::run(settings).await?;
    println!("report: {}", report.display());
    Ok(())
}
