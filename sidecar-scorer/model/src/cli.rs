//! `outrider-model`: generate data, train and register, promote, list and
//! fetch versions, serve, and batch-score.
//!
//! Exit status: 0 on success, 2 for bad input (an invalid option, a model or
//! alias that does not exist), 3 when `batch` reported bad lines (the good
//! ones are all scored), 1 for anything else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::batch::{self, BatchOptions};
use crate::data::{self, Drift, GeneratorConfig, schema};
use crate::error::{Error, IoContext, Result};
use crate::registry::{self, AnyRegistry, ModelUri, Registry};
use crate::serve::model::LoadedModel;
use crate::serve::{ServeOptions, Server, server::DEFAULT_MAX_REQUEST_BYTES};
use crate::train::{self, TrainConfig};

/// The name the command reports itself and its errors under.
pub const NAME: &str = "outrider-model";

const EXAMPLES: &str = "\
Examples:
  outrider-model generate --rows 200000 --seed 42 --out /tmp/tx.csv
  outrider-model --registry /tmp/registry train --data /tmp/tx.csv --out /tmp/model
  outrider-model --registry /tmp/registry promote 1
  outrider-model --registry /tmp/registry serve --model models:/fraud@champion
  outrider-model --registry /tmp/registry batch --model models:/fraud@champion \\
      --in /tmp/tx.csv --out /tmp/scores.csv

Exit status: 0 on success, 2 for bad input (an invalid option, a model or alias
that does not exist), 3 when `batch` reported lines it could not score (the good
ones are all scored), 1 for anything else.

Documentation: docs/model.md";

/// The fraud model of outrider: generate data, train and register, serve
/// (Open Inference Protocol over REST and gRPC), batch-score.
///
/// A model server, a training job and a batch job need only this command; the
/// control plane (`outrider-scorer`) is deployed apart.
#[derive(Debug, Parser)]
#[command(name = NAME, version, after_help = EXAMPLES)]
pub struct Cli {
    /// The registry: a folder (the embedded registry) or an MLflow tracking
    /// URI (http://host:port).
    #[arg(
        long,
        global = true,
        env = "OUTRIDER_REGISTRY",
        default_value = ".outrider/registry"
    )]
    pub registry: String,
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Generate card transactions (CSV) with about 1% fraud, optionally drifted.
    Generate(GenerateArgs),
    /// Train the fraud model, write ONNX and its reference profile, and
    /// register it as the `challenger` version.
    Train(TrainArgs),
    /// Make a version the `champion` (the `challenger` alias leaves it).
    Promote {
        /// Registered model name.
        #[arg(long, default_value = "fraud")]
        name: String,
        /// The version number to promote.
        version: u64,
    },
    /// List a model's versions and aliases (JSON).
    Versions {
        /// Registered model name.
        #[arg(long, default_value = "fraud")]
        name: String,
    },
    /// Resolve a model URI (models:/fraud@champion) and download its files.
    Fetch {
        /// models:/NAME@ALIAS, models:/NAME/VERSION, or a path to an .onnx file.
        uri: String,
        /// Folder for model.onnx and profile.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a model with the Open Inference Protocol (REST and gRPC).
    Serve(ServeArgs),
    /// Score a CSV or NDJSON file of transactions.
    Batch(BatchArgs),
    /// Print the input schema of the fraud model (features in tensor order,
    /// merchant categories in code order).
    Schema,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of transactions.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Seed of the generator: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output CSV file.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of fraudulent transactions, between 0 and 1.
    #[arg(long, default_value_t = 0.01)]
    pub fraud_rate: f64,
    /// Length of the period in days, from --start.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// First second of the period (Unix time; default 2026-01-01T00:00:00Z).
    #[arg(long, default_value_t = data::generator::DEFAULT_START)]
    pub start: i64,
    /// Covariate drift: multiply every amount.
    #[arg(long, default_value_t = 1.0)]
    pub amount_scale: f64,
    /// Covariate drift: share of transactions at a merchant category the
    /// model never saw (`crypto_exchange`).
    #[arg(long, default_value_t = 0.0)]
    pub new_category_share: f64,
    /// Concept drift: share of fraud following the new pattern.
    #[arg(long, default_value_t = 0.0)]
    pub fraud_shift: f64,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled transactions (CSV, as `generate` writes).
    #[arg(long)]
    pub data: PathBuf,
    /// Also write model.onnx, profile.json and report.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Registered model name.
    #[arg(long, default_value = "fraud")]
    pub name: String,
    /// Experiment the run is logged under.
    #[arg(long, default_value = "fraud")]
    pub experiment: String,
    /// L2 penalty on standardised features.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Most iterations of the optimiser.
    #[arg(long, default_value_t = 200)]
    pub max_iterations: u64,
    /// Share of the most recent rows held out for evaluation.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Seed the data was generated with (recorded with the run).
    #[arg(long)]
    pub data_seed: Option<u64>,
    /// Do not log or register anything (needs --out).
    #[arg(long)]
    pub no_register: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model URI (models:/fraud@champion, models:/fraud/3) or an .onnx file.
    #[arg(long, default_value = "models:/fraud@champion")]
    pub model: String,
    /// The name clients use (default: the registered name or the file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Address of the REST listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Address of the gRPC listener.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub grpc: SocketAddr,
    /// Serve REST only.
    #[arg(long)]
    pub no_grpc: bool,
    /// Check the registry this often and swap in a moved alias (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub poll: Option<Duration>,
    /// Worker threads (default: one per available core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Largest REST request body (inference, load) and gRPC message, in
    /// bytes (default 64 MiB); a larger one gets 413 or RESOURCE_EXHAUSTED.
    /// The NDJSON stream has no total limit, only one of 1 MiB per line.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// A model URI (models:/fraud@champion, models:/fraud/3) or an .onnx file.
    #[arg(long, default_value = "models:/fraud@champion")]
    pub model: String,
    /// Input file (.csv or .ndjson).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Output file (.csv or .ndjson; by default the input's format).
    #[arg(long)]
    pub out: PathBuf,
    /// Error report (default: <out>.errors.ndjson).
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// No progress bar (there is none when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Parses the command line and runs the command; the `outrider-model` binary.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Runs a command and returns the process exit status.
pub fn run(args: Cli) -> ExitCode {
    init_logging();
    let threads = match &args.command {
        ModelCommand::Serve(s) => s.threads,
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::io("tokio runtime", e)),
    };
    match runtime.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("{NAME}: {e}");
    if e.is_client_error() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn dispatch(args: Cli) -> Result<ExitCode> {
    let open = || AnyRegistry::open(&args.registry);
    match args.command {
        ModelCommand::Generate(g) => generate(&g),
        ModelCommand::Train(t) => train_command(&t, &args.registry).await,
        ModelCommand::Promote { name, version } => {
            let v = registry::promote(&open()?, &name, version).await?;
            print_json(&json!(v));
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Versions { name } => {
            print_json(&json!(open()?.list_versions(&name).await?));
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Fetch { uri, out } => {
            let files = registry::resolve(&open()?, &uri.parse()?).await?;
            std::fs::create_dir_all(&out).at(&out)?;
            let model = out.join(registry::MODEL_FILE);
            std::fs::write(&model, &files.onnx).at(&model)?;
            if let Some(profile) = &files.profile {
                let path = out.join(registry::PROFILE_FILE);
                std::fs::write(&path, profile.to_json()?).at(&path)?;
            }
            print_json(&json!(files.version));
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Serve(s) => serve(s, open()?).await,
        ModelCommand::Batch(b) => batch_command(b, open()?).await,
        ModelCommand::Schema => {
            print_json(&json!({
                "input": schema::INPUT,
                "output": schema::OUTPUT,
                "features": schema::FEATURES,
                "categories": {"merchant_category": schema::all_merchant_categories()},
            }));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn generate(g: &GenerateArgs) -> Result<ExitCode> {
    let config = GeneratorConfig {
        rows: g.rows,
        seed: g.seed,
        fraud_rate: g.fraud_rate,
        start: g.start,
        days: g.days,
        drift: Drift {
            amount_scale: g.amount_scale,
            new_category_share: g.new_category_share,
            fraud_shift: g.fraud_shift,
        },
    };
    let rows = data::generate(&config)?;
    data::csv_file::write(&g.out, &rows)?;
    let fraud = rows.iter().filter(|t| t.fraud()).count();
    eprintln!(
        "wrote {} transactions ({fraud} fraudulent) to {}",
        rows.len(),
        g.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn train_command(t: &TrainArgs, registry_location: &str) -> Result<ExitCode> {
    if t.no_register && t.out.is_none() {
        return Err(Error::invalid(
            "no-register",
            "needs --out, or the model goes nowhere",
        ));
    }
    let rows = data::csv_file::read(&t.data)?;
    let config = TrainConfig {
        model_name: t.name.clone(),
        alpha: t.alpha,
        max_iterations: t.max_iterations,
        test_fraction: t.test_fraction,
        seed: t.data_seed,
    };
    let trained = tokio::task::spawn_blocking(move || train::train(&rows, &config))
        .await
        .map_err(|e| Error::model(format!("training task failed: {e}")))??;
    if let Some(out) = &t.out {
        std::fs::create_dir_all(out).at(out)?;
        let write = |file: &str, bytes: &[u8]| {
            let path = out.join(file);
            std::fs::write(&path, bytes).at(&path)
        };
        write(registry::MODEL_FILE, &trained.onnx)?;
        write(
            registry::PROFILE_FILE,
            trained.profile.to_json()?.as_bytes(),
        )?;
        let report = serde_json::to_vec_pretty(&trained.report)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        write(registry::REPORT_FILE, &report)?;
    }
    let version = if t.no_register {
        None
    } else {
        let registry = AnyRegistry::open(registry_location)?;
        Some(registry::publish(&registry, &trained, &t.experiment).await?)
    };
    let test = &trained.report.test;
    eprintln!(
        "test split ({} rows, {} fraud): ROC AUC {:.4}, PR AUC {:.4}, recall at 1% FPR {:.4}",
        test.rows, test.positives, test.roc_auc, test.pr_auc, test.recall_at_1pct_fpr
    );
    print_json(&json!({
        "version": version,
        "test": trained.report.test,
        "train": trained.report.train,
        "params": trained.report.params,
    }));
    Ok(ExitCode::SUCCESS)
}

async fn serve(s: ServeArgs, registry: AnyRegistry) -> Result<ExitCode> {
    let options = ServeOptions {
        http: s.http,
        grpc: (!s.no_grpc).then_some(s.grpc),
        model: s.model.parse()?,
        name: s.name,
        poll: s.poll,
        max_request_bytes: usize::try_from(s.max_body_bytes).unwrap_or(usize::MAX),
    };
    let server = Server::start(options, Arc::new(registry)).await?;
    server.run_until_signal().await?;
    Ok(ExitCode::SUCCESS)
}

async fn batch_command(b: BatchArgs, registry: AnyRegistry) -> Result<ExitCode> {
    let uri: ModelUri = b.model.parse()?;
    let files = registry::resolve(&registry, &uri).await?;
    let name = match &uri {
        ModelUri::Registered { name, .. } => name.clone(),
        ModelUri::File(_) => files.version.name.clone(),
    };
    let options = BatchOptions {
        input: b.input,
        output: b.out,
        errors: b.errors,
        progress: !b.no_progress,
    };
    let source = uri.to_string();
    let summary = tokio::task::spawn_blocking(move || {
        let model = LoadedModel::from_files(&name, files, &source)?;
        batch::score_file(&model, &options)
    })
    .await
    .map_err(|e| Error::model(format!("batch task failed: {e}")))??;
    print_json(&json!(summary));
    if let Some(path) = &summary.errors {
        eprintln!(
            "{} of {} lines could not be scored; see {}",
            summary.failed,
            summary.rows,
            path.display()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
