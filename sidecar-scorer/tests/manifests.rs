//! The scorer's Kubernetes manifests in `istio/` run the scorer as it is: every flag and
//! environment variable they give exists in `outrider-scorer serve --help`, a scorer
//! started with their arguments (on the store each one is for: PostgreSQL for the
//! Deployment, SQLite for the sidecar) comes up, and their probes' paths answer 200.
//! The manifests' schemas and the rest of their consistency are checked in
//! tests/tests/istio.rs.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::Backend;
use outrider_harness::client::HttpClient;
use outrider_harness::paths;
use outrider_harness::scorer::{Scorer, ScorerSpec};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_outrider-scorer");

/// The scorer container of each manifest, with the store it is meant for.
fn scorer_containers() -> Vec<(&'static str, Value, &'static str)> {
    let mut found = Vec::new();
    for (file, container, store) in [
        ("istio/scorer.yaml", "scorer", "postgres"),
        (
            "istio/scorer-sidecar-patch.yaml",
            "outrider-scorer",
            "sqlite",
        ),
    ] {
        let text = std::fs::read_to_string(paths::repo_root().join(file)).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap_or_else(|| panic!("no Deployment in {file}"));
        let found_container = deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == container)
            .unwrap_or_else(|| panic!("no container {container} in {file}"))
            .clone();
        found.push((file, found_container, store));
    }
    found
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn the_manifests_use_flags_and_variables_the_scorer_has() {
    let help = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let words = |prefix: &str| -> BTreeSet<String> {
        help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| w.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    };
    let flags = words("--");
    let variables = words("OUTRIDER_");
    assert!(flags.contains("--listen") && variables.contains("OUTRIDER_STORE"));

    for (file, container, _) in scorer_containers() {
        let args = strings(&container["args"]);
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{file}");
        for arg in args.iter().filter(|a| a.starts_with("--")) {
            assert!(flags.contains(arg), "{file}: `serve` has no {arg}");
        }
        for env in container["env"].as_array().unwrap() {
            let name = env["name"].as_str().unwrap();
            assert!(variables.contains(name), "{file}: `serve` reads no {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scorer_started_as_the_manifests_say_answers_their_probes() {
    for (file, container, store) in scorer_containers() {
        let backend = match store {
            "postgres" => Backend::postgres().await,
            _ => Backend::sqlite(),
        };
        let jobs = tempfile::tempdir().unwrap();
        // The manifest's arguments, with what belongs to this machine replaced: the
        // address (a free loopback port), the store (the harness passes its own) and
        // the jobs folder.
        let mut args = strings(&container["args"]).into_iter().skip(1);
        let mut extra = Vec::new();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--listen" | "--store" | "--jobs-dir" => {
                    args.next();
                }
                _ => extra.push(arg),
            }
        }
        extra.extend(["--jobs-dir".into(), jobs.path().display().to_string()]);
        let scorer = Scorer::start(ScorerSpec {
            binary: BINARY.into(),
            store: backend.store(),
            replica_id: "manifest".into(),
            extra_args: extra,
        })
        .await
        .unwrap_or_else(|e| panic!("{file}: {e:#}"));

        let http = HttpClient::new();
        for probe in ["readinessProbe", "livenessProbe"] {
            let path = container[probe]["httpGet"]["path"].as_str().unwrap();
            let reply = http
                .get(&format!("{}{path}", scorer.url()), &[])
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{file}: {probe} {path}");
        }
        let ready: Value = serde_json::from_slice(
            &http
                .get(&format!("{}/readyz", scorer.url()), &[])
                .await
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(ready["store"], store, "{file}");
    }
}
