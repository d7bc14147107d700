//! Benchmarks against the real Envoy, each comparing configs of envoy/bench/ side by
//! side in one run, interleaved over rounds, every Envoy with `--concurrency 1`:
//!
//! - `outrider-bench filter` (`make bench-filter`): (a) a plain route, (b) Envoy's
//!   weighted_clusters, (c) an empty wasm filter, (d) the outrider filter, (e) the
//!   empty filter setting the routing header; the outrider filter with (g) a shadow at
//!   100%, (i) sampling 10% and (j) a guardrail judging 90% of the requests;
//! - `outrider-bench shadow` (`make bench-shadow`): the outrider filter with a shadow
//!   variant mirroring (f) 0% and (g) 100% of requests, the shadow on its own upstream,
//!   and (h) Envoy's fire-and-forget `request_mirror_policies` at 100% for reference;
//! - `outrider-bench hostcalls` (`make bench-hostcalls`): what one host call of each
//!   kind costs in Envoy's V8: the empty filter, and the empty filter making 20 extra
//!   calls of one kind per request;
//! - `outrider-bench instructions` (`make bench-instructions`): the same configs, each
//!   Envoy under valgrind's callgrind, in instructions per request: a count that does
//!   not move with what else the machine is doing;
//! - `outrider-bench rollback` (`make bench-rollback`): 200 requests a second with a
//!   10% canary that goes wrong: time to 0% and bad responses with the guardrail and
//!   with the analysis alone, and how many runs catch a silently wrong model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use outrider_harness::bootstrap::LISTENER;
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::{Envoy, Launch};
use outrider_harness::load::{
    Latency, closed_loop, cpu_seconds, latency_histogram, median, open_loop, pin_to_cpu,
};
use outrider_harness::paths;
use outrider_harness::standin::{Behaviour, Scoring, StandIn};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// CPU per request, throughput and latency of the filter against baselines.
    Filter(RunArgs),
    /// The primary's latency and throughput with no mirroring and with all of it.
    Shadow(RunArgs),
    /// Envoy CPU per host call of each kind (the CPU phase only).
    Hostcalls(RunArgs),
    /// Instructions per request under callgrind.
    Instructions(InstructionArgs),
    /// How fast a broken canary is out of traffic, and what clients got meanwhile.
    Rollback(RollbackArgs),
}

#[derive(clap::Args)]
struct RollbackArgs {
    /// Runs of each scenario.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also print each run's bad responses by who answered them.
    #[arg(long)]
    verbose: bool,
}

#[derive(clap::Args)]
struct InstructionArgs {
    /// Requests counted per config (after 300 to warm up).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Also the empty filter making 20 host calls of each kind per request.
    #[arg(long)]
    hostcalls: bool,
    /// Count these bootstraps instead of the default ones.
    #[arg(long = "config")]
    configs: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Rounds; each runs every config, in a rotated order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Requests per config per round in the closed-loop (CPU, throughput) phase.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Slices each round's closed-loop requests are cut into; every slice visits every
    /// config, so the machine's slow moments fall on all of them alike.
    #[arg(long, default_value_t = 20)]
    slices: usize,
    /// Connections in the closed-loop phase.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per second in the fixed-rate (latency) phase; below saturation.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds of the fixed-rate phase per config per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Compare these bootstraps instead of the default ones (each with a listener
    /// named `outrider`, upstreams on 18091/18092, distinct ports).
    #[arg(long = "config")]
    configs: Vec<PathBuf>,
}

struct Target {
    label: String,
    path: PathBuf,
}

const FILTER_TARGETS: [(&str, &str); 8] = [
    ("(a) plain route", "a-plain.yaml"),
    ("(b) weighted_clusters", "b-weighted-clusters.yaml"),
    ("(c) pass-through wasm", "c-passthrough-wasm.yaml"),
    ("(d) outrider filter", "d-outrider.yaml"),
    (
        "(e) pass-through sets header",
        "e-passthrough-sets-header.yaml",
    ),
    ("(g) outrider, one shadow at 100%", "g-shadow-100.yaml"),
    ("(i) outrider, sampling 10%", "i-outrider-sampling-10.yaml"),
    ("(j) outrider, guardrail", "j-outrider-guardrail.yaml"),
];

const SHADOW_TARGETS: [(&str, &str); 3] = [
    ("(f) mirroring 0%", "f-shadow-0.yaml"),
    ("(g) mirroring 100%", "g-shadow-100.yaml"),
    ("(h) Envoy's own mirror 100%", "h-native-mirror-100.yaml"),
];

/// Host calls per request of the hostcalls benchmark, and what each config makes.
const HOSTCALLS_PER_REQUEST: u32 = 20;
const HOSTCALL_KINDS: [(&str, &str); 8] = [
    ("time", "read the clock"),
    (
        "header",
        "read a request header that is present (the host copies it into the VM)",
    ),
    ("no_header", "read a request header that is absent"),
    ("set_header", "set a request header"),
    ("counter", "increment a counter"),
    ("histogram", "record a histogram value"),
    ("status", "read `:status` of the response"),
    ("route", "clear_route_cache"),
];

/// The empty filter, and the empty filter making [`HOSTCALLS_PER_REQUEST`] calls of one
/// kind per request: bootstraps written from (e)'s into target/bench/hostcalls/.
fn hostcall_targets() -> Result<Vec<Target>> {
    let template = std::fs::read_to_string(
        paths::envoy_configs().join("bench/e-passthrough-sets-header.yaml"),
    )?;
    const VALUE: &str = "'x-outrider-variant=stable keep_route'";
    if !template.contains(VALUE) {
        bail!("(e)'s bootstrap no longer configures the filter with {VALUE}");
    }
    let dir = paths::repo_root().join("target/bench/hostcalls");
    std::fs::create_dir_all(&dir)?;
    let mut targets = Vec::new();
    let configs = std::iter::once(("none".to_owned(), String::new())).chain(
        HOSTCALL_KINDS.iter().map(|(kind, _)| {
            (
                (*kind).to_owned(),
                format!("{kind}*{HOSTCALLS_PER_REQUEST}"),
            )
        }),
    );
    for (i, (kind, config)) in configs.enumerate() {
        let yaml = template
            .replace("port_value: 9105", &format!("port_value: {}", 9200 + i))
            .replace("port_value: 10105", &format!("port_value: {}", 10200 + i))
            .replace(VALUE, &format!("'{config}'"));
        let path = dir.join(format!("{kind}.yaml"));
        std::fs::write(&path, yaml)?;
        targets.push(Target {
            label: if config.is_empty() {
                "(c) pass-through wasm".to_owned()
            } else {
                format!("+{HOSTCALLS_PER_REQUEST} {kind}")
            },
            path,
        });
    }
    Ok(targets)
}

#[derive(Default)]
struct Samples {
    cpu_us: Vec<f64>,
    throughput: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
}

/// Envoy runs on this CPU alone; the load generator and the upstreams on the next.
const ENVOY_CPU: usize = 0;
const LOAD_CPU: usize = 1;

fn main() -> Result<()> {
    let args = Args::parse();
    let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) > LOAD_CPU;
    if pinned {
        // Threads the runtime starts inherit this.
        pin_to_cpu(LOAD_CPU)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let envoy_cpu = pinned.then_some(ENVOY_CPU);
    runtime.block_on(async {
        match args.bench {
            Bench::Filter(args) => {
                // (g) copies every request to a shadow; (i) posts telemetry to a scorer
                // stand-in. Both answer at once.
                let _shadow = StandIn::start_on("shadow", SocketAddr::from(([127, 0, 0, 1], 18093)), echo())
                    .await
                    .context("shadow upstream port 18093")?;
                let _scorer = StandIn::start_on("scorer", SocketAddr::from(([127, 0, 0, 1], 18094)), echo())
                    .await
                    .context("scorer stand-in port 18094")?;
                let targets = targets(&args, &FILTER_TARGETS);
                let samples = measure(&targets, &args, envoy_cpu, None).await?;
                report_filter(&args, &targets, &samples)
            }
            Bench::Hostcalls(mut args) => {
                args.seconds = 0;
                let targets = hostcall_targets()?;
                let samples = measure(&targets, &args, envoy_cpu, None).await?;
                report_hostcalls(&args, &targets, &samples)
            }
            Bench::Instructions(args) => instructions(&args).await,
            Bench::Rollback(args) => rollback_bench(&args).await,
            Bench::Shadow(args) => {
                // The shadow answers like the primaries, on its own upstream.
                let _shadow = StandIn::start_on("shadow", SocketAddr::from(([127, 0, 0, 1], 18093)), echo())
                    .await
                    .context("shadow upstream port 18093")?;
                let targets = targets(&args, &SHADOW_TARGETS);
                let body = Bytes::from(json!({"inputs": [{"name": "tx", "datatype": "FP64", "shape": [1, 2], "data": [17, 0.73]}]}).to_string());
                let samples = measure(&targets, &args, envoy_cpu, Some(body)).await?;
                report_shadow(&args, &targets, &samples)
            }
        }
    })
}

fn echo() -> Behaviour {
    Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    }
}

fn targets(args: &RunArgs, defaults: &[(&str, &str)]) -> Vec<Target> {
    if args.configs.is_empty() {
        defaults
            .iter()
            .map(|(label, file)| Target {
                label: (*label).to_owned(),
                path: paths::envoy_configs().join("bench").join(file),
            })
            .collect()
    } else {
        args.configs
            .iter()
            .map(|path| Target {
                label: path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                path: path.clone(),
            })
            .collect()
    }
}

/// Runs every config's Envoy and measures them side by side.
async fn measure(
    targets: &[Target],
    args: &RunArgs,
    envoy_cpu: Option<usize>,
    body: Option<Bytes>,
) -> Result<Vec<Samples>> {
    let _stable = StandIn::start_on("stable", SocketAddr::from(([127, 0, 0, 1], 18091)), echo())
        .await
        .context("upstream port 18091")?;
    let _canary = StandIn::start_on("canary", SocketAddr::from(([127, 0, 0, 1], 18092)), echo())
        .await
        .context("upstream port 18092")?;
    let mut envoys = Vec::new();
    let mut urls = Vec::new();
    for target in targets {
        let mut launch = Launch::workers(1);
        launch.cpu = envoy_cpu;
        let envoy = Envoy::start_file(&target.path, &launch)
            .await
            .with_context(|| format!("starting {}", target.path.display()))?;
        urls.push(format!(
            "{}/v2/models/fraud/infer",
            envoy.url(LISTENER).await?
        ));
        envoys.push(envoy);
    }
    let body = body.as_ref();
    let clients: Vec<HttpClient> = targets.iter().map(|_| HttpClient::new()).collect();
    eprintln!("warming up...");
    for (client, url) in clients.iter().zip(&urls) {
        closed_loop(client, url, 2_000, args.connections, body).await?;
    }

    let n = targets.len();
    let per_slice = args.requests.div_ceil(args.slices);
    let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
    for round in 0..args.rounds {
        let mut cpu = vec![0.0; n];
        let mut wall = vec![0.0; n];
        let mut latency = Vec::new();
        for _ in 0..n {
            latency.push(latency_histogram()?);
        }
        for slice in 0..args.slices {
            for k in 0..n {
                let i = (k + slice + round) % n;
                let before = cpu_seconds(envoys[i].pid())?;
                wall[i] += closed_loop(&clients[i], &urls[i], per_slice, args.connections, body)
                    .await?
                    .as_secs_f64();
                cpu[i] += cpu_seconds(envoys[i].pid())? - before;
            }
        }
        for second in 0..args.seconds {
            for k in 0..n {
                let i = (k + second as usize + round) % n;
                let run = open_loop(
                    &clients[i],
                    &urls[i],
                    args.rate,
                    Duration::from_secs(1),
                    body,
                )
                .await?;
                if run.errors > 0 {
                    bail!(
                        "{}: {} errors at {} req/s",
                        targets[i].label,
                        run.errors,
                        args.rate
                    );
                }
                latency[i].add(&run.micros)?;
            }
        }
        let requests = (per_slice * args.slices) as f64;
        for i in 0..n {
            let l = Latency::of(&latency[i]);
            let s = &mut samples[i];
            s.cpu_us.push(cpu[i] / requests * 1e6);
            s.throughput.push(requests / wall[i]);
            s.p50_ms.push(l.p50_ms);
            s.p99_ms.push(l.p99_ms);
            eprintln!(
                "round {} {:<28} cpu {:>6.1} us/req  {:>7.0} req/s  p50 {:.3} ms  p99 {:.3} ms at {} req/s",
                round + 1,
                targets[i].label,
                cpu[i] / requests * 1e6,
                requests / wall[i],
                l.p50_ms,
                l.p99_ms,
                args.rate
            );
        }
    }
    let record = json!({
        "rounds": args.rounds, "requests": args.requests, "slices": args.slices,
        "connections": args.connections, "rate": args.rate, "seconds": args.seconds,
        "targets": targets.iter().zip(&samples).map(|(t, s)| json!({
            "config": t.path, "cpu_us_per_request": s.cpu_us, "throughput": s.throughput,
            "p50_ms": s.p50_ms, "p99_ms": s.p99_ms
        })).collect::<Vec<_>>(),
    });
    let dir = paths::repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let name = targets.first().map_or("bench", |t| {
        if t.path.ends_with("f-shadow-0.yaml") {
            "shadow"
        } else if t
            .path
            .starts_with(paths::repo_root().join("target/bench/hostcalls"))
        {
            "hostcalls"
        } else {
            "filter"
        }
    });
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&record)?,
    )?;
    println!("every round's figures: target/bench/{name}.json");
    Ok(samples)
}

fn table(args: &RunArgs, targets: &[Target], samples: &[Samples]) {
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1}–{hi:.1}")
    };
    println!(
        "\n{} rounds; CPU phase {} requests over {} connections in {} interleaved slices; latency phase {} req/s for {} s; Envoy 1.40.0 --concurrency 1 on CPU {ENVOY_CPU}, load and upstreams on CPU {LOAD_CPU}\n",
        args.rounds, args.requests, args.connections, args.slices, args.rate, args.seconds
    );
    // Without a latency phase (hostcalls, or --seconds 0) there are no latencies to show.
    let latency = args.seconds > 0;
    let (head, rule) = if latency {
        (
            format!(" p50 ms at {0} req/s | p99 ms at {0} req/s |", args.rate),
            "---|---|",
        )
    } else {
        (String::new(), "")
    };
    println!("| config | Envoy CPU µs/req, median (range) | throughput req/s, median |{head}");
    println!("|---|---|---|{rule}");
    for (t, s) in targets.iter().zip(samples) {
        let latencies = if latency {
            format!(" {:.3} | {:.3} |", median(&s.p50_ms), median(&s.p99_ms))
        } else {
            String::new()
        };
        println!(
            "| {} | {:.1} ({}) | {:.0} |{latencies}",
            t.label,
            median(&s.cpu_us),
            range(&s.cpu_us),
            median(&s.throughput),
        );
    }
    println!();
}

fn wasm_size(file: &str) -> Result<u64> {
    let path = match file {
        "outrider" => paths::filter_wasm()?,
        _ => paths::passthrough_wasm()?,
    };
    Ok(std::fs::metadata(path)?.len())
}

fn report_filter(args: &RunArgs, targets: &[Target], samples: &[Samples]) -> Result<()> {
    table(args, targets, samples);
    let find = |file: &str| {
        targets
            .iter()
            .position(|t| t.path.ends_with(file))
            .and_then(|i| samples.get(i))
    };
    let cpu = |s: &Samples| median(&s.cpu_us);
    if let (Some(a), Some(c), Some(d)) = (
        find("a-plain.yaml"),
        find("c-passthrough-wasm.yaml"),
        find("d-outrider.yaml"),
    ) {
        let (passthrough, outrider) = (cpu(c) - cpu(a), cpu(d) - cpu(a));
        println!(
            "- outrider's added CPU over (a) / the pass-through filter's: {outrider:.1} / {passthrough:.1} = {:.2} (target ≤ 1.5)",
            outrider / passthrough
        );
        if args.seconds > 0 {
            println!(
                "- latency at {} req/s, (d) / (c): p50 {:.3}, p99 {:.3} (target ≤ 1.05)",
                args.rate,
                median(&d.p50_ms) / median(&c.p50_ms),
                median(&d.p99_ms) / median(&c.p99_ms)
            );
        }
        if let Some(e) = find("e-passthrough-sets-header.yaml") {
            println!(
                "- of outrider's added CPU: wasm filter {:.1}, setting the routing header (Envoy then selects the route again) (e) − (c) {:.1}, outrider's own work (d) − (e) {:.1}",
                cpu(c) - cpu(a),
                cpu(e) - cpu(c),
                cpu(d) - cpu(e)
            );
        }
        for (file, what) in [
            ("g-shadow-100.yaml", "one shadow at 100% (g)"),
            ("i-outrider-sampling-10.yaml", "sampling 10% (i)"),
            (
                "j-outrider-guardrail.yaml",
                "a guardrail judging 90% of the requests (j)",
            ),
        ] {
            if let Some(x) = find(file) {
                println!(
                    "- with {what}: added CPU over (a) {:.1} µs, {:.2} × the pass-through filter's; {:+.1} µs over (d)",
                    cpu(x) - cpu(a),
                    (cpu(x) - cpu(a)) / passthrough,
                    cpu(x) - cpu(d)
                );
            }
        }
    }
    println!(
        "- .wasm sizes: outrider_filter.wasm {} bytes (target < 400 KB), outrider_passthrough.wasm {} bytes",
        wasm_size("outrider")?,
        wasm_size("passthrough")?
    );
    Ok(())
}

fn report_hostcalls(args: &RunArgs, targets: &[Target], samples: &[Samples]) -> Result<()> {
    table(args, targets, samples);
    let Some((base, rest)) = samples.split_first() else {
        return Ok(());
    };
    let base = median(&base.cpu_us);
    println!("| host call | Envoy CPU µs per call |\n|---|---|");
    for ((kind, what), s) in HOSTCALL_KINDS.iter().zip(rest) {
        println!(
            "| `{kind}`: {what} | {:.2} |",
            (median(&s.cpu_us) - base) / f64::from(HOSTCALLS_PER_REQUEST)
        );
    }
    Ok(())
}

/// The configs `outrider-bench instructions` counts by default.
const INSTRUCTION_TARGETS: [(&str, &str); 7] = [
    ("(a) plain route", "a-plain.yaml"),
    ("(c) pass-through wasm", "c-passthrough-wasm.yaml"),
    (
        "(e) pass-through sets header",
        "e-passthrough-sets-header.yaml",
    ),
    ("(d) outrider filter", "d-outrider.yaml"),
    ("(g) outrider, one shadow at 100%", "g-shadow-100.yaml"),
    ("(i) outrider, sampling 10%", "i-outrider-sampling-10.yaml"),
    ("(j) outrider, guardrail", "j-outrider-guardrail.yaml"),
];

/// Runs each config's Envoy under callgrind, one at a time, and counts the
/// instructions (every thread) that `requests` keyed requests cost it.
async fn instructions(args: &InstructionArgs) -> Result<()> {
    let ups = [
        ("stable", 18091),
        ("canary", 18092),
        ("shadow", 18093),
        ("scorer", 18094),
    ];
    let mut standins = Vec::new();
    for (name, port) in ups {
        standins.push(
            StandIn::start_on(name, SocketAddr::from(([127, 0, 0, 1], port)), echo())
                .await
                .with_context(|| format!("upstream port {port}"))?,
        );
    }
    let mut targets = if args.configs.is_empty() {
        INSTRUCTION_TARGETS
            .iter()
            .map(|(label, file)| Target {
                label: (*label).to_owned(),
                path: paths::envoy_configs().join("bench").join(file),
            })
            .collect::<Vec<_>>()
    } else {
        args.configs
            .iter()
            .map(|path| Target {
                label: path.display().to_string(),
                path: path.clone(),
            })
            .collect()
    };
    if args.hostcalls {
        targets.extend(hostcall_targets()?.into_iter().skip(1));
    }
    let dir = paths::repo_root().join("target/bench/callgrind");
    std::fs::create_dir_all(&dir)?;
    let client = HttpClient::new();
    let mut counts = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let out = dir.join(format!("{i}.out"));
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.to_string_lossy().starts_with(&*out.to_string_lossy()) {
                std::fs::remove_file(path)?;
            }
        }
        let launch = Launch {
            callgrind: Some(out.clone()),
            ..Launch::workers(1)
        };
        let envoy = Envoy::start_file(&target.path, &launch)
            .await
            .with_context(|| format!("starting {} under callgrind", target.path.display()))?;
        let url = format!("{}/v2/models/fraud/infer", envoy.url(LISTENER).await?);
        let send = |n: usize, from: usize| {
            let (client, url) = (&client, &url);
            async move {
                for k in from..from + n {
                    let key = format!("user-{k}");
                    let reply = client.get(url, &[("x-user-id", &key)]).await?;
                    if reply.status != 200 {
                        bail!("status {} from {url}", reply.status);
                    }
                }
                Ok(())
            }
        };
        send(300, 0).await?;
        envoy.callgrind_zero()?;
        send(args.requests, 300).await?;
        envoy.callgrind_dump()?;
        let dump = PathBuf::from(format!("{}.1", out.display()));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let text = loop {
            match std::fs::read_to_string(&dump) {
                Ok(text) if text.lines().any(|l| l.starts_with("totals:")) => break text,
                _ if std::time::Instant::now() > deadline => {
                    bail!("no callgrind dump at {}", dump.display())
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|v| v.trim().parse().ok())
            .context("a callgrind dump without totals")?;
        let per_request = total as f64 / args.requests as f64;
        eprintln!(
            "{:<36} {per_request:>9.0} instructions/request",
            target.label
        );
        counts.push(per_request);
        drop(envoy);
    }
    println!(
        "\nInstructions per request (every Envoy thread, callgrind), {} keyed requests after 300 to warm up, Envoy 1.40.0 --concurrency 1\n",
        args.requests
    );
    let base = |file: &str| {
        targets
            .iter()
            .position(|t| t.path.ends_with(file))
            .and_then(|i| counts.get(i))
            .copied()
    };
    let (plain, passthrough) = (base("a-plain.yaml"), base("c-passthrough-wasm.yaml"));
    println!(
        "| config | instructions/request | added over (a) | × (c)'s added |\n|---|---|---|---|"
    );
    for (t, n) in targets.iter().zip(&counts) {
        let added = plain.map(|a| n - a);
        let ratio = added
            .zip(plain.zip(passthrough))
            .map(|(x, (a, c))| x / (c - a));
        println!(
            "| {} | {n:.0} | {} | {} |",
            t.label,
            added.map_or_else(String::new, |x| format!("{x:+.0}")),
            ratio.map_or_else(String::new, |r| format!("{r:.2}"))
        );
    }
    if args.hostcalls
        && let Some(c) = passthrough
    {
        println!("\n| host call | instructions per call |\n|---|---|");
        let per_kind = targets.iter().zip(&counts).filter(|(t, _)| {
            t.path
                .starts_with(paths::repo_root().join("target/bench/hostcalls"))
        });
        for ((kind, what), (_, n)) in HOSTCALL_KINDS.iter().zip(per_kind) {
            println!(
                "| `{kind}`: {what} | {:.0} |",
                (n - c) / f64::from(HOSTCALLS_PER_REQUEST)
            );
        }
    }
    Ok(())
}

fn report_shadow(args: &RunArgs, targets: &[Target], samples: &[Samples]) -> Result<()> {
    table(args, targets, samples);
    let ratio = |on: &Samples, off: &Samples, label: &str| {
        println!(
            "- {label} / (f), at {} req/s: p50 {:.3}, p99 {:.3}; throughput {:.3}; Envoy CPU per primary request {:.1} µs / {:.1} µs",
            args.rate,
            median(&on.p50_ms) / median(&off.p50_ms),
            median(&on.p99_ms) / median(&off.p99_ms),
            median(&on.throughput) / median(&off.throughput),
            median(&on.cpu_us),
            median(&off.cpu_us)
        );
    };
    // With other bootstraps (--config) the labels below would not fit.
    if args.configs.is_empty()
        && let [off, on, native] = samples
    {
        ratio(on, off, "(g) outrider mirroring 100% (target p99 ≤ 1.10)");
        ratio(native, off, "(h) Envoy's own mirror 100%");
    }
    Ok(())
}

/// `outrider-bench rollback`: each scenario `rounds` times, then medians and ranges.
async fn rollback_bench(args: &RollbackArgs) -> Result<()> {
    use outrider_harness::rollback::{INTERVAL_S, RATE, Scenario, run};
    let scorer = paths::repo_root().join("target/release/outrider-scorer");
    let scenarios = [
        (
            Scenario::GuardrailOn5xx,
            "canary answers 503, guardrail (max_5xx_share 0.05, window 10 s)",
        ),
        (
            Scenario::AnalysisOn5xx,
            "canary answers 503, analysis alone (5 s runs, failure_limit 1)",
        ),
        (
            Scenario::SilentlyWrong,
            "canary answers 200 with 60% of scores flipped, analysis (prediction_ks)",
        ),
    ];
    println!(
        "rollback: {RATE} req/s, canary at 10%, Envoy with 2 workers, poll and flush 300 ms, {} rounds",
        args.rounds
    );
    println!(
        "{:<72} {:>16} {:>14} {:>8}  rolled back by",
        "scenario", "onset -> 0% (s)", "bad responses", "runs"
    );
    for (scenario, label) in scenarios {
        let mut measured = Vec::new();
        for _ in 0..args.rounds {
            measured.push(run(scenario, &scorer).await?);
        }
        let secs: Vec<f64> = measured
            .iter()
            .map(|m| m.to_zero.map_or(f64::NAN, |d| d.as_secs_f64()))
            .collect();
        let bad: Vec<f64> = measured.iter().map(|m| m.bad as f64).collect();
        let runs: Vec<String> = measured
            .iter()
            .map(|m| m.runs.map_or_else(|| "-".to_owned(), |r| r.to_string()))
            .collect();
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{:.2} ({lo:.2}-{hi:.2})", median(v))
        };
        let by: Vec<&str> = measured.iter().map(|m| m.rolled_back_by.as_str()).collect();
        if args.verbose {
            for m in &measured {
                println!(
                    "    bad responses by who answered: {:?}, the last sent {:?} after the onset",
                    m.bad_by, m.last_bad
                );
            }
        }
        println!(
            "{label:<72} {:>16} {:>14} {:>8}  {}",
            range(&secs),
            format!(
                "{:.0} ({:.0}-{:.0})",
                median(&bad),
                bad.iter().copied().fold(f64::INFINITY, f64::min),
                bad.iter().copied().fold(0.0, f64::max)
            ),
            runs.join(","),
            by.join(",")
        );
    }
    // Flagger's defaults, computed: an analysis every 60 s, rolled back at the first
    // failed check (threshold 1). The fault falls anywhere in an interval, so the next
    // check comes 0-60 s later; meanwhile the canary's 10% of 200 req/s fail.
    let canary_rps = RATE as f64 * 0.1;
    println!(
        "{:<72} {:>16} {:>14} {:>8}  (computed, not measured)",
        "Flagger defaults: interval 60 s, threshold 1, same traffic",
        "30 (0-60)",
        format!("{:.0} (0-{:.0})", canary_rps * 30.0, canary_rps * 60.0),
        "1"
    );
    println!(
        "analysis interval: {INTERVAL_S} s; onset -> 0% is when the last request the canary served was sent"
    );
    Ok(())
}
