//! `make bench-scorer`: the release scorer as a separate process, it and its database
//! pinned to CPU 0, the load generator on CPU 1; one scorer on a SQLite file and one
//! on a private PostgreSQL, measured side by side in one run:
//!
//! - telemetry batches ingested per second (closed loop, several connections);
//! - feedback events per second, posted in batches;
//! - CPU of the scorer for 1,000 proxies that each poll the rollout state once a
//!   second with `If-None-Match` (open loop, one keep-alive connection per proxy).
//!
//! Rounds visit both stores in turn, so the machine's slow moments fall on both.

mod load;
mod proc;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use outrider_harness::load::{median, pin_to_cpu};
use outrider_harness::postgres::Postgres;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec};
use serde_json::json;

use load::{Figures, PollFigures};

#[derive(Parser)]
struct Args {
    /// Rounds; each measures every store once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each closed-loop measurement (telemetry, feedback).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Connections posting telemetry batches at once.
    #[arg(long, default_value_t = 16)]
    telemetry_connections: usize,
    /// Feedback events per POST.
    #[arg(long, default_value_t = 5_000)]
    feedback_batch: usize,
    /// Connections posting feedback at once.
    #[arg(long, default_value_t = 4)]
    feedback_connections: usize,
    /// Proxies polling the state, each once a second.
    #[arg(long, default_value_t = 1_000)]
    proxies: usize,
    /// Seconds of polling measured per store per round.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
    /// Measure only these stores (repeatable; default: both).
    #[arg(long = "store", value_enum)]
    stores: Vec<StoreKind>,
    /// Measure only these loads (repeatable; default: all).
    #[arg(long = "load", value_enum)]
    loads: Vec<LoadKind>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoadKind {
    Telemetry,
    Feedback,
    Polls,
}

/// The scorer and its database run on this CPU; the load generator on the other.
const SCORER_CPU: usize = 0;
const LOAD_CPU: usize = 1;

pub const ROLLOUT: &str = "bench";
pub const VARIANTS: [(&str, f64); 3] = [("stable", 80.0), ("canary", 15.0), ("challenger", 5.0)];

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres),
}

/// A scorer under test and its store.
struct Subject {
    label: &'static str,
    scorer: Scorer,
    db: Db,
    telemetry: Vec<Figures>,
    feedback: Vec<Figures>,
    polls: Vec<PollFigures>,
}

impl Subject {
    /// The database server's processes, whose CPU counts too (SQLite runs inside the
    /// scorer).
    fn db_pids(&self) -> Vec<u32> {
        match &self.db {
            Db::Sqlite(_) => Vec::new(),
            Db::Postgres(pg) => proc::postgres_pids(&pg.url()),
        }
    }

    /// A figure of the database server's CPU; SQLite's is part of the scorer's.
    fn db_figure(&self, figure: impl FnOnce() -> String) -> String {
        match self.db {
            Db::Sqlite(_) => "(in the scorer)".to_owned(),
            Db::Postgres(_) => figure(),
        }
    }
}

async fn start(label: &'static str, db: Db) -> Result<Subject> {
    let store = match &db {
        Db::Sqlite(dir) => dir.path().join("bench.db").display().to_string(),
        Db::Postgres(pg) => pg.url(),
    };
    let scorer = Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store,
        replica_id: format!("bench-{label}"),
        extra_args: vec![],
    })
    .await?;
    let body = json!({
        "name": ROLLOUT,
        "variants": VARIANTS.iter().map(|(name, weight)| json!({"name": name, "weight": weight})).collect::<Vec<_>>(),
    });
    let reply = load::post(
        &scorer,
        "/v1/rollouts",
        ADMIN_TOKEN,
        body.to_string().into(),
    )
    .await?;
    if reply.status != 201 {
        bail!("creating the rollout: {}", reply.status);
    }
    Ok(Subject {
        label,
        scorer,
        db,
        telemetry: Vec::new(),
        feedback: Vec::new(),
        polls: Vec::new(),
    })
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.stores.is_empty() {
        args.stores = vec![StoreKind::Sqlite, StoreKind::Postgres];
    }
    if args.loads.is_empty() {
        args.loads = vec![LoadKind::Telemetry, LoadKind::Feedback, LoadKind::Polls];
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) <= LOAD_CPU {
        bail!("this benchmark needs two CPUs: the scorer on one, the load on the other");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    // Processes inherit the CPU of the thread that starts them; this runtime has one.
    pin_to_cpu(SCORER_CPU)?;
    let mut subjects = Vec::new();
    for store in &args.stores {
        subjects.push(match store {
            StoreKind::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("outrider-bench-")
                    .tempdir()?;
                start("SQLite", Db::Sqlite(dir)).await?
            }
            StoreKind::Postgres => {
                let pg = Postgres::start().await.context("starting PostgreSQL")?;
                start("PostgreSQL", Db::Postgres(pg)).await?
            }
        });
    }
    pin_to_cpu(LOAD_CPU)?;
    for s in &subjects {
        let mut pids = vec![s.scorer.pid()];
        pids.extend(s.db_pids());
        proc::check_pinned(&pids, SCORER_CPU).with_context(|| format!("{}: pinning", s.label))?;
    }

    eprintln!("warming up...");
    let ids = load::Ids::new();
    for s in &subjects {
        if args.loads.contains(&LoadKind::Telemetry) {
            load::telemetry(&s.scorer, &[], &ids, 8, Duration::from_secs(1)).await?;
        }
        if args.loads.contains(&LoadKind::Feedback) {
            let one_second = Duration::from_secs(1);
            load::feedback(&s.scorer, &[], &ids, args.feedback_batch, 2, one_second).await?;
        }
    }
    let seconds = Duration::from_secs(args.seconds);
    let n = subjects.len();
    for round in 0..args.rounds {
        for k in 0..n {
            let s = &mut subjects[(k + round) % n];
            let db = s.db_pids();
            eprintln!("round {} of {}: {}", round + 1, args.rounds, s.label);
            if args.loads.contains(&LoadKind::Telemetry) {
                let t = load::telemetry(&s.scorer, &db, &ids, args.telemetry_connections, seconds)
                    .await?;
                s.telemetry.push(t);
            }
            if args.loads.contains(&LoadKind::Feedback) {
                let f = load::feedback(
                    &s.scorer,
                    &db,
                    &ids,
                    args.feedback_batch,
                    args.feedback_connections,
                    seconds,
                )
                .await?;
                s.feedback.push(f);
            }
            if args.loads.contains(&LoadKind::Polls) {
                let p = load::polls(
                    &s.scorer,
                    &db,
                    args.proxies,
                    Duration::from_secs(args.poll_seconds),
                )
                .await?;
                s.polls.push(p);
            }
        }
    }
    for s in &subjects {
        load::check_counts(&s.scorer, &ids)
            .await
            .with_context(|| format!("{}: counts", s.label))?;
    }
    report(&args, &subjects);
    Ok(())
}

/// `median (min–max)` of some figures.
fn spread(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.digits$} ({min:.digits$}–{max:.digits$})",
        median(values)
    )
}

fn report(args: &Args, subjects: &[Subject]) {
    let rate = |f: &[Figures]| f.iter().map(Figures::rate).collect::<Vec<_>>();
    let scorer_us = |f: &[Figures], per: f64| {
        f.iter()
            .map(|x| x.scorer_cpu_s * 1e6 / x.units as f64 * per)
            .collect::<Vec<_>>()
    };
    let db_us = |f: &[Figures], per: f64| {
        f.iter()
            .map(|x| x.db_cpu_s * 1e6 / x.units as f64 * per)
            .collect::<Vec<_>>()
    };
    println!(
        "\n{} rounds; scorer and database on CPU {SCORER_CPU}, load on CPU {LOAD_CPU}\n",
        args.rounds
    );
    let measured = |load| args.loads.contains(&load);
    if measured(LoadKind::Telemetry) {
        println!(
            "Telemetry: batches of 3 variants (23-bucket latency histograms) and 4 samples, {} connections, {} s per round",
            args.telemetry_connections, args.seconds
        );
        println!("\n| store | batches/s | scorer CPU µs/batch | database CPU µs/batch |");
        println!("|---|---|---|---|");
        for s in subjects {
            println!(
                "| {} | {} | {} | {} |",
                s.label,
                spread(&rate(&s.telemetry), 0),
                spread(&scorer_us(&s.telemetry, 1.0), 1),
                s.db_figure(|| spread(&db_us(&s.telemetry, 1.0), 1)),
            );
        }
    }
    if measured(LoadKind::Feedback) {
        println!(
            "\nFeedback: {} events per POST, {} connections, {} s per round",
            args.feedback_batch, args.feedback_connections, args.seconds
        );
        println!(
            "\n| store | events/s | scorer CPU µs/1,000 events | database CPU µs/1,000 events |"
        );
        println!("|---|---|---|---|");
        for s in subjects {
            println!(
                "| {} | {} | {} | {} |",
                s.label,
                spread(&rate(&s.feedback), 0),
                spread(&scorer_us(&s.feedback, 1_000.0), 0),
                s.db_figure(|| spread(&db_us(&s.feedback, 1_000.0), 0)),
            );
        }
    }
    if measured(LoadKind::Polls) {
        println!(
            "\nState polls: {} proxies, each polling once a second with If-None-Match, {} s per round",
            args.proxies, args.poll_seconds
        );
        println!(
            "\n| store | polls/s | scorer CPU ms/s | scorer CPU µs/poll | database CPU ms/s | 304 share | p50 ms | p99 ms |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for s in subjects {
            let p = &s.polls;
            let each = |f: fn(&PollFigures) -> f64| p.iter().map(f).collect::<Vec<_>>();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.label,
                spread(&each(PollFigures::rate), 0),
                spread(&each(|x| x.scorer_cpu_s * 1e3 / x.seconds), 1),
                spread(&each(|x| x.scorer_cpu_s * 1e6 / x.polls as f64), 1),
                s.db_figure(|| spread(&each(|x| x.db_cpu_s * 1e3 / x.seconds), 1)),
                spread(&each(|x| x.not_modified as f64 / x.polls as f64), 4),
                spread(&each(|x| x.p50_ms), 2),
                spread(&each(|x| x.p99_ms), 2),
            );
        }
    }
    let [sqlite, postgres] = subjects else {
        return;
    };
    if !(measured(LoadKind::Telemetry) && measured(LoadKind::Feedback)) {
        return;
    }
    let m = |f: &[Figures]| median(&rate(f));
    println!("\nRatios of medians:");
    println!(
        "- SQLite telemetry against the 1,000 batches/s target: {:.2}; feedback against 200,000 events/s: {:.2}",
        m(&sqlite.telemetry) / 1_000.0,
        m(&sqlite.feedback) / 200_000.0
    );
    println!(
        "- PostgreSQL / SQLite: telemetry {:.2}, feedback {:.2}",
        m(&postgres.telemetry) / m(&sqlite.telemetry),
        m(&postgres.feedback) / m(&sqlite.feedback)
    );
}
