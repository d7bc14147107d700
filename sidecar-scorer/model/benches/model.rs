//! `make bench-model`: the release model server (`outrider-model serve`)
//! pinned to one core with `taskset`, driven from the other core over REST and
//! gRPC, single rows and batches of 64, closed loop; REST single rows at a
//! fixed 1,000 req/s open-loop rate; batch scoring of a CSV file
//! (`outrider-model batch`) on the same core; and the same ONNX model in
//! onnxruntime's Python API (`interop/ort_bench.py`) on the same core in the
//! same run.
//!
//! Environment: `OUTRIDER_MODEL_BIN` (default: the `outrider-model` binary
//! cargo built for this benchmark, `target/release/outrider-model`) and
//! `OUTRIDER_PYTHON` (default `.venv/bin/python`, with onnxruntime and
//! pandas). Both must exist: the benchmark fails rather than leave a column out.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outrider_model::data::{GeneratorConfig, Transaction, csv_file, generate};
use outrider_model::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use outrider_model::proto::model_infer_request::InferInputTensor;
use outrider_model::proto::{ModelInferRequest, ModelInferResponse};
use outrider_model::tensor::Elements;
use outrider_model::train::{self, TrainConfig};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// The core the server, the batch scorer and onnxruntime run on.
const SERVER_CPU: usize = 1;
/// The core the load generator runs on.
const CLIENT_CPU: usize = 0;
const TRAIN_ROWS: usize = 100_000;
const BATCH_FILE_ROWS: usize = 1_000_000;
const BATCH: usize = 64;
const SINGLE_REQUESTS: usize = 10_000;
const BATCH_REQUESTS: usize = 2_000;
const WARM_UP: usize = 1_000;
const OPEN_LOOP_RATE: u64 = 1_000;
const OPEN_LOOP_SECONDS: u64 = 10;
const P99_TARGET: Duration = Duration::from_millis(1);
const BATCH_TARGET_ROWS_PER_S: f64 = 500_000.0;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() {
    pin_to_cpu(CLIENT_CPU);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = env_path(
        "OUTRIDER_MODEL_BIN",
        PathBuf::from(env!("CARGO_BIN_EXE_outrider-model")),
    );
    let python = env_path("OUTRIDER_PYTHON", root.join(".venv/bin/python"));
    let dir = tempfile::tempdir().expect("temporary folder");

    eprintln!("training the model on {TRAIN_ROWS} transactions ...");
    let rows = transactions(TRAIN_ROWS, 1);
    let trained = train::train(&rows, &TrainConfig::default()).expect("training");
    let model = dir.path().join("fraud.onnx");
    std::fs::write(&model, &trained.onnx).expect("write model");
    let requests: Vec<[f32; 10]> = transactions(20_000, 2)
        .iter()
        .map(Transaction::features)
        .collect();
    eprintln!("writing {BATCH_FILE_ROWS} transactions for batch scoring ...");
    let csv = dir.path().join("transactions.csv");
    csv_file::write(&csv, &transactions(BATCH_FILE_ROWS, 3)).expect("write transactions");
    let schema = dir.path().join("schema.json");
    let output = run(Command::new(&binary)
        .arg("--registry")
        .arg(dir.path().join("registry"))
        .arg("schema"));
    std::fs::write(&schema, output).expect("write schema");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = ModelServer::start(&binary, &model, dir.path());
    let figures = runtime.block_on(async {
        server.wait_ready().await;
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut grpc = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .expect("gRPC connection")
            .max_decoding_message_size(64 << 20);
        let url = format!("http://{}/v2/models/fraud/infer", server.http);
        let mut figures = Vec::new();
        for batch in [1, BATCH] {
            let bodies = rest_bodies(&requests, batch);
            let n = if batch == 1 {
                SINGLE_REQUESTS
            } else {
                BATCH_REQUESTS
            };
            for body in bodies.iter().take(WARM_UP) {
                rest_call(&http, &url, body.clone(), batch).await;
            }
            let mut lat = Vec::with_capacity(n);
            let start = Instant::now();
            for body in bodies.iter().cycle().take(n) {
                let t = Instant::now();
                rest_call(&http, &url, body.clone(), batch).await;
                lat.push(t.elapsed());
            }
            figures.push(Figure::closed(
                format!("REST {}", label(batch)),
                batch,
                start.elapsed(),
                lat,
            ));

            let messages = grpc_requests(&requests, batch);
            for m in messages.iter().take(WARM_UP) {
                grpc_call(&mut grpc, m.clone(), batch).await;
            }
            let mut lat = Vec::with_capacity(n);
            let start = Instant::now();
            for m in messages.iter().cycle().take(n) {
                let t = Instant::now();
                grpc_call(&mut grpc, m.clone(), batch).await;
                lat.push(t.elapsed());
            }
            figures.push(Figure::closed(
                format!("gRPC {}", label(batch)),
                batch,
                start.elapsed(),
                lat,
            ));
        }
        let open = open_loop(&http, &url, &rest_bodies(&requests, 1)).await;
        (figures, open)
    });
    let (figures, open) = figures;
    let server_cpu = server.cpu_seconds();
    drop(server);

    eprintln!("batch scoring {BATCH_FILE_ROWS} rows ...");
    let out = dir.path().join("scores.csv");
    let start = Instant::now();
    let summary = run(Command::new("taskset")
        .args(["-c", &SERVER_CPU.to_string()])
        .arg(&binary)
        .arg("--registry")
        .arg(dir.path().join("registry"))
        .args(["batch", "--no-progress", "--model"])
        .arg(&model)
        .arg("--in")
        .arg(&csv)
        .arg("--out")
        .arg(&out));
    let batch_wall = start.elapsed();
    let summary: Value = serde_json::from_slice(&summary).expect("batch summary");
    assert_eq!(summary["scored"], BATCH_FILE_ROWS as u64, "{summary}");
    let batch_rows_per_s = BATCH_FILE_ROWS as f64 / batch_wall.as_secs_f64();

    eprintln!("onnxruntime ...");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/ort_bench.py");
    let ort: Value = serde_json::from_slice(&run(Command::new(&python)
        .arg(script)
        .arg(&model)
        .arg(&csv)
        .arg(&schema)
        .arg(SERVER_CPU.to_string())))
    .expect("ort_bench.py prints JSON");

    report(
        &figures,
        &open,
        server_cpu,
        batch_rows_per_s,
        &summary,
        &ort,
    );
}

fn label(batch: usize) -> String {
    if batch == 1 {
        "single".into()
    } else {
        format!("batch {batch}")
    }
}

fn env_path(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{} not found (run `make bench-model`, or set {var})",
        path.display()
    );
    path
}

fn transactions(rows: usize, seed: u64) -> Vec<Transaction> {
    generate(&GeneratorConfig {
        rows,
        seed,
        ..GeneratorConfig::default()
    })
    .expect("generator config")
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "cannot pin the load generator to CPU {cpu}");
    }
}

/// Runs a command to completion and returns its standard output.
fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed");
    output.stdout
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The release server on its own core.
struct ModelServer {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl ModelServer {
    fn start(binary: &Path, model: &Path, dir: &Path) -> Self {
        let (http, grpc) = (free_port(), free_port());
        let child = Command::new("taskset")
            .args(["-c", &SERVER_CPU.to_string()])
            .arg(binary)
            .arg("--registry")
            .arg(dir.join("registry"))
            .args(["serve", "--name", "fraud", "--threads", "1", "--model"])
            .arg(model)
            .args(["--http", &http.to_string(), "--grpc", &grpc.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the model server");
        Self { child, http, grpc }
    }

    async fn wait_ready(&self) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let uri: hyper::Uri = format!("http://{}/v2/health/ready", self.http)
            .parse()
            .expect("uri");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(uri.clone()).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the model server never got ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU seconds the server has used (user + system, from /proc).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("server stat");
        // Fields after the command name: utime and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rest_bodies(rows: &[[f32; 10]], batch: usize) -> Vec<Bytes> {
    rows.chunks_exact(batch)
        .map(|chunk| {
            let data: Vec<f32> = chunk.iter().flatten().copied().collect();
            Bytes::from(
                json!({"inputs": [{"name": "transaction", "shape": [batch, 10], "datatype": "FP32", "data": data}]})
                    .to_string(),
            )
        })
        .collect()
}

async fn rest_call(client: &HttpClient, url: &str, body: Bytes, batch: usize) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request");
    let response = client.request(request).await.expect("REST call");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("REST body")
        .to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // The answer must hold one score per row: a short reply is a failure.
    let reply: Value = serde_json::from_slice(&body).expect("JSON reply");
    assert_eq!(
        reply["outputs"][0]["data"].as_array().map(Vec::len),
        Some(batch)
    );
}

fn grpc_requests(rows: &[[f32; 10]], batch: usize) -> Vec<ModelInferRequest> {
    rows.chunks_exact(batch)
        .map(|chunk| ModelInferRequest {
            model_name: "fraud".into(),
            inputs: vec![InferInputTensor {
                name: "transaction".into(),
                datatype: "FP32".into(),
                shape: vec![batch as i64, 10],
                ..Default::default()
            }],
            // The binary form that Triton's clients send.
            raw_input_contents: vec![
                Elements::F32(chunk.iter().flatten().copied().collect()).to_raw(),
            ],
            ..Default::default()
        })
        .collect()
}

async fn grpc_call(
    client: &mut GrpcInferenceServiceClient<Channel>,
    request: ModelInferRequest,
    batch: usize,
) {
    let response: ModelInferResponse = client
        .model_infer(request)
        .await
        .expect("gRPC call")
        .into_inner();
    let bytes = response
        .raw_output_contents
        .first()
        .map_or(0, Vec::len)
        .max(
            response
                .outputs
                .first()
                .and_then(|o| o.contents.as_ref())
                .map_or(0, |c| c.fp32_contents.len() * 4 + c.fp64_contents.len() * 8),
        );
    assert!(bytes >= batch * 4, "a short gRPC reply: {bytes} bytes");
}

struct Figure {
    name: String,
    requests_per_s: f64,
    rows_per_s: f64,
    p50: Duration,
    p99: Duration,
}

impl Figure {
    fn closed(name: String, batch: usize, elapsed: Duration, mut lat: Vec<Duration>) -> Self {
        lat.sort_unstable();
        let per_s = lat.len() as f64 / elapsed.as_secs_f64();
        Self {
            name,
            requests_per_s: per_s,
            rows_per_s: per_s * batch as f64,
            p50: quantile(&lat, 0.50),
            p99: quantile(&lat, 0.99),
        }
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct OpenLoop {
    sent: usize,
    /// Requests per second actually sent.
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Requests sent on a fixed schedule, each timed from the moment it was due,
/// so a stall delays the requests behind it and shows in their latency. A
/// thread keeps the schedule with the kernel's fine-grained sleep (tokio's
/// timer ticks in whole milliseconds) and hands each due time to the client.
async fn open_loop(client: &HttpClient, url: &str, bodies: &[Bytes]) -> OpenLoop {
    let period = Duration::from_micros(1_000_000 / OPEN_LOOP_RATE);
    let n = (OPEN_LOOP_RATE * OPEN_LOOP_SECONDS) as usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let ticker = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(20);
        for i in 0..n {
            let due = start + period * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(due).is_err() {
                return;
            }
        }
    });
    let mut tasks = Vec::with_capacity(n);
    let mut first = None;
    while let Some(due) = rx.recv().await {
        first.get_or_insert(due);
        let body = bodies[tasks.len() % bodies.len()].clone();
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            rest_call(&client, &url, body, 1).await;
            due.elapsed()
        }));
    }
    let sending = first.map_or(Duration::ZERO, |f| f.elapsed());
    ticker.join().expect("the schedule thread");
    let mut lat = Vec::with_capacity(n);
    for task in tasks {
        lat.push(task.await.expect("open-loop request"));
    }
    lat.sort_unstable();
    OpenLoop {
        sent: n,
        rate: n as f64 / sending.as_secs_f64(),
        p50: quantile(&lat, 0.50),
        p99: quantile(&lat, 0.99),
        max: lat[lat.len() - 1],
    }
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn ort_us(v: &Value, key: &str) -> String {
    format!("{:.0}", v[key].as_f64().unwrap_or(f64::NAN))
}

fn report(
    figures: &[Figure],
    open: &OpenLoop,
    server_cpu: f64,
    batch_rows_per_s: f64,
    summary: &Value,
    ort: &Value,
) {
    println!();
    println!(
        "Fraud model (logistic regression, 10 features, ONNX). Server, batch scorer and onnxruntime pinned to CPU {SERVER_CPU} (taskset); load generator on CPU {CLIENT_CPU}."
    );
    println!();
    println!(
        "| {:<44} | {:>10} | {:>12} | {:>8} | {:>8} |",
        "path", "requests/s", "inferences/s", "p50 µs", "p99 µs"
    );
    println!(
        "|{:-<46}|{:->12}|{:->14}|{:->10}|{:->10}|",
        "", "", "", "", ""
    );
    for f in figures {
        println!(
            "| {:<44} | {:>10.0} | {:>12.0} | {:>8} | {:>8} |",
            f.name,
            f.requests_per_s,
            f.rows_per_s,
            us(f.p50),
            us(f.p99)
        );
    }
    let single = &ort["single"];
    let batch = &ort["batch64"];
    println!(
        "| {:<44} | {:>10.0} | {:>12.0} | {:>8} | {:>8} |",
        "onnxruntime (Python, in-process) single",
        single["per_s"].as_f64().unwrap_or(f64::NAN),
        single["per_s"].as_f64().unwrap_or(f64::NAN),
        ort_us(single, "p50_us"),
        ort_us(single, "p99_us"),
    );
    let ort_rows = batch["rows_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "| {:<44} | {:>10.0} | {:>12.0} | {:>8} | {:>8} |",
        format!("onnxruntime (Python, in-process) batch {BATCH}"),
        ort_rows / BATCH as f64,
        ort_rows,
        ort_us(batch, "p50_us"),
        ort_us(batch, "p99_us"),
    );
    println!();
    println!(
        "REST single at {OPEN_LOOP_RATE} req/s open loop ({:.0} req/s sent), {} requests: p50 {} µs, p99 {} µs, max {} µs (target p99 < {} µs: {})",
        open.rate,
        open.sent,
        us(open.p50),
        us(open.p99),
        us(open.max),
        P99_TARGET.as_micros(),
        if open.p99 < P99_TARGET {
            "met"
        } else {
            "NOT MET"
        }
    );
    println!("Model server CPU over the whole serving run: {server_cpu:.1} s");
    println!();
    println!(
        "| {:<58} | {:>12} |",
        format!("batch scoring, {BATCH_FILE_ROWS} rows"),
        "rows/s"
    );
    println!("|{:-<60}|{:->14}|", "", "");
    println!(
        "| {:<58} | {:>12.0} |",
        "outrider-model batch, CSV to CSV (process wall time)", batch_rows_per_s
    );
    println!(
        "| {:<58} | {:>12.0} |",
        "outrider-model batch, its own count",
        summary["rows_per_second"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "| {:<58} | {:>12.0} |",
        "onnxruntime + pandas, CSV to CSV",
        ort["csv_rows_per_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "| {:<58} | {:>12.0} |",
        "onnxruntime in memory (chunks of 4096)",
        ort["in_memory_rows_per_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!();
    println!(
        "Batch scoring target ≥ {BATCH_TARGET_ROWS_PER_S:.0} rows/s: {}",
        if batch_rows_per_s >= BATCH_TARGET_ROWS_PER_S {
            "met"
        } else {
            "NOT MET"
        }
    );
    println!(
        "onnxruntime {}; same ONNX file, one thread, same CPU.",
        ort["onnxruntime"].as_str().unwrap_or("?")
    );
}
