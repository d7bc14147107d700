//! The `outrider-model` command as a user runs it: help and version, the
//! schema, a generate, train, promote and batch round trip through an embedded
//! registry, and bad arguments refused with a message naming them.

use std::path::Path;
use std::process::{Command, Output};

use outrider_model::data::{csv_file, schema};
use outrider_model::onnx::OnnxModel;
use outrider_model::train;
use serde_json::Value;

const ROWS: usize = 5_000;

/// Runs `outrider-model` with `args`; the registry comes from the arguments
/// only, never from the caller's environment.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outrider-model"))
        .args(args)
        .env_remove("OUTRIDER_REGISTRY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("outrider-model runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed and returns its standard output.
fn succeed(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_and_version_name_the_command_and_every_subcommand() {
    let help = succeed(&["--help"]);
    assert!(help.contains("Usage: outrider-model"), "{help}");
    for command in [
        "generate", "train", "promote", "versions", "fetch", "serve", "batch", "schema",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`{command}` missing from --help:\n{help}"
        );
    }
    assert!(help.contains("--registry"), "{help}");
    assert!(help.contains("OUTRIDER_REGISTRY"), "{help}");
    assert!(help.contains("Exit status"), "{help}");

    let serve = succeed(&["serve", "--help"]);
    for flag in ["--model", "--http", "--grpc", "--poll", "--max-body-bytes"] {
        assert!(serve.contains(flag), "`{flag}` missing:\n{serve}");
    }

    let version = succeed(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("outrider-model {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn schema_prints_the_features_and_categories_in_tensor_order() {
    let doc = json(&succeed(&["schema"]));
    assert_eq!(doc["input"], "transaction");
    assert_eq!(doc["output"], "score");
    let features: Vec<&str> = doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(features, schema::FEATURES);
    let categories: Vec<&str> = doc["categories"]["merchant_category"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(categories.len(), 11);
    assert_eq!(categories[0], "grocery");
    assert_eq!(categories[10], "crypto_exchange");
    assert_eq!(categories, schema::all_merchant_categories());
}

#[test]
fn generate_train_promote_and_batch_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let data = dir.path().join("tx.csv");
    let model_dir = dir.path().join("model");
    let rows = ROWS.to_string();

    let out = run(&[
        "generate",
        "--rows",
        &rows,
        "--seed",
        "11",
        "--out",
        path(&data),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("wrote {ROWS} transactions")),
        "{}",
        text(&out.stderr)
    );
    let transactions = csv_file::read(&data).unwrap();
    assert_eq!(transactions.len(), ROWS);
    let header = std::fs::read_to_string(&data).unwrap();
    assert_eq!(
        header.lines().next().unwrap(),
        "transaction_id,timestamp,customer_id,amount,merchant_category,hour,\
         distance_from_home_km,card_present,device_age_days,velocity_1h,\
         country_mismatch,account_age_days,avg_amount_30d,is_fraud"
    );

    let report = json(&succeed(&[
        "--registry",
        path(&registry),
        "train",
        "--data",
        path(&data),
        "--out",
        path(&model_dir),
        "--data-seed",
        "11",
    ]));
    assert_eq!(report["version"]["version"], 1, "{report}");
    assert_eq!(
        report["version"]["aliases"],
        serde_json::json!(["challenger"])
    );
    // The most recent 20% are held out.
    assert_eq!(report["test"]["rows"], ROWS / 5, "{report}");
    assert_eq!(report["train"]["rows"], ROWS - ROWS / 5, "{report}");
    let auc = report["test"]["roc_auc"].as_f64().unwrap();
    assert!(auc > 0.8 && auc <= 1.0, "ROC AUC {auc}");
    for file in ["model.onnx", "profile.json", "report.json"] {
        assert!(model_dir.join(file).is_file(), "{file} not written");
    }

    let promoted = json(&succeed(&["--registry", path(&registry), "promote", "1"]));
    assert_eq!(promoted["aliases"], serde_json::json!(["champion"]));
    let versions = json(&succeed(&["--registry", path(&registry), "versions"]));
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");

    let scores = dir.path().join("scores.csv");
    let summary = json(&succeed(&[
        "--registry",
        path(&registry),
        "batch",
        "--model",
        "models:/fraud@champion",
        "--in",
        path(&data),
        "--out",
        path(&scores),
        "--no-progress",
    ]));
    assert_eq!(
        (&summary["rows"], &summary["scored"], &summary["failed"]),
        (&Value::from(ROWS), &Value::from(ROWS), &Value::from(0)),
        "{summary}"
    );
    assert_eq!(summary["errors"], Value::Null);

    // One line per transaction, in order, each with the model's own score.
    let model =
        OnnxModel::from_bytes(&std::fs::read(model_dir.join("model.onnx")).unwrap()).unwrap();
    let expected = train::score(&model, &transactions.iter().collect::<Vec<_>>()).unwrap();
    let mut reader = csv::Reader::from_path(&scores).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "transaction_id", "score"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), ROWS);
    for (i, record) in records.iter().enumerate() {
        // The header is line 1.
        assert_eq!(record[0], (i + 2).to_string());
        assert_eq!(record[1], transactions[i].transaction_id.to_string());
        let score: f64 = record[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "line {}: {score}", i + 2);
        assert!((score - expected[i]).abs() < 1e-6, "line {}", i + 2);
    }

    // A bad line is reported, the others are scored, and the exit status says so.
    let text_in = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<&str> = text_in.lines().collect();
    lines.insert(3, "1,2,3");
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, lines.join("\n") + "\n").unwrap();
    let out = run(&[
        "--registry",
        path(&registry),
        "batch",
        "--model",
        "models:/fraud/1",
        "--in",
        path(&broken),
        "--out",
        path(&dir.path().join("broken-scores.ndjson")),
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let summary = json(&text(&out.stdout));
    assert_eq!(
        (&summary["rows"], &summary["scored"], &summary["failed"]),
        (&Value::from(ROWS + 1), &Value::from(ROWS), &Value::from(1))
    );
    let errors =
        std::fs::read_to_string(dir.path().join("broken-scores.ndjson.errors.ndjson")).unwrap();
    assert_eq!(
        errors.trim(),
        r#"{"line":4,"error":"has 3 fields, the header has 14"}"#
    );
    let scored = std::fs::read_to_string(dir.path().join("broken-scores.ndjson")).unwrap();
    assert_eq!(scored.lines().count(), ROWS);
    assert!(
        text(&out.stderr).contains(&format!("1 of {} lines could not be scored", ROWS + 1)),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_arguments_exit_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("tx.csv");

    // Refused by the parser: the flag and the value are named.
    let out = run(&["generate", "--rows", "many", "--out", path(&out_file)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid value 'many' for '--rows <ROWS>'"),
        "{stderr}"
    );
    let out = run(&["generate", "--rows", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--out <OUT>"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["serve", "--max-body-bytes", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value '0' for '--max-body-bytes <BYTES>'"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["score"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unrecognized subcommand 'score'"),
        "{}",
        text(&out.stderr)
    );

    // Refused by the command: the field and the rule, under the command's name.
    let out = run(&["generate", "--rows", "0", "--out", path(&out_file)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "outrider-model: rows: must be at least 1"
    );
    assert!(!out_file.exists());
    let out = run(&[
        "generate",
        "--rows",
        "10",
        "--fraud-rate",
        "1.5",
        "--out",
        path(&out_file),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "outrider-model: fraud_rate: must be between 0 and 1 (exclusive), got 1.5"
    );
    let registry = dir.path().join("registry");
    let out = run(&["--registry", path(&registry), "promote", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("outrider-model: "), "{stderr}");
    assert!(stderr.contains("fraud"), "{stderr}");
    let out = run(&[
        "--registry",
        path(&registry),
        "serve",
        "--model",
        "s3://bucket/model.onnx",
        "--no-grpc",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).trim(),
        "outrider-model: model: `s3://bucket/model.onnx`: expected models:/<name>@<alias>, \
         models:/<name>/<version> or a path"
    );
}
