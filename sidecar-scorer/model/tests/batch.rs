//! Batch scoring of CSV and NDJSON files: every good line scored with its
//! line number and id, every bad line reported with its line number, none of
//! the good ones dropped.

mod support;

use std::path::Path;

use outrider_model::batch::{self, BatchOptions};
use outrider_model::data::csv_file;
use outrider_model::onnx::OnnxModel;
use outrider_model::registry::{ModelFiles, ModelVersion};
use outrider_model::serve::model::LoadedModel;
use outrider_model::train;
use serde_json::Value;
use support::*;

fn loaded() -> LoadedModel {
    let files = ModelFiles {
        version: ModelVersion {
            name: "fraud".into(),
            version: 1,
            run_id: String::new(),
            source: "test".into(),
            aliases: Vec::new(),
        },
        onnx: trained().onnx.clone(),
        profile: None,
    };
    LoadedModel::from_files("fraud", files, "test").unwrap()
}

fn options(dir: &Path, input: &str, output: &str) -> BatchOptions {
    BatchOptions {
        input: dir.join(input),
        output: dir.join(output),
        errors: None,
        progress: false,
    }
}

#[test]
fn a_csv_file_is_scored_and_its_bad_lines_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = transactions(10_000, 31);
    let input = dir.path().join("in.csv");
    csv_file::write(&input, &data).unwrap();
    // Break three lines (file lines 2 + index), keep the rest.
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let amount_at = |line: &str| line.split(',').nth(3).unwrap().to_owned();
    let broken_amount = lines[101].replacen(&format!(",{},", amount_at(&lines[101])), ",12x,", 1);
    lines[101] = broken_amount;
    lines[5001] = lines[5001].split(',').take(5).collect::<Vec<_>>().join(",");
    lines[9000] = lines[9000].replacen(&format!(",{},", amount_at(&lines[9000])), ",,", 1);
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let summary = batch::score_file(&loaded(), &options(dir.path(), "in.csv", "out.csv")).unwrap();
    assert_eq!(
        (summary.rows, summary.scored, summary.failed),
        (10_000, 9_997, 3)
    );
    let errors_path = summary.errors.clone().unwrap();
    assert_eq!(errors_path, dir.path().join("out.csv.errors.ndjson"));
    let errors: Vec<Value> = std::fs::read_to_string(&errors_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reported: Vec<(u64, String)> = errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        vec![
            (102, "amount: `12x` is not a number".to_owned()),
            (5002, "has 5 fields, the header has 14".to_owned()),
            (9001, "amount: is empty".to_owned()),
        ]
    );

    // Every good line, in order, with its line number, id and the model's score.
    let model = OnnxModel::from_bytes(&trained().onnx).unwrap();
    let refs: Vec<_> = data.iter().collect();
    let expected = train::score(&model, &refs).unwrap();
    let mut reader = csv::Reader::from_path(dir.path().join("out.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "transaction_id", "score"]
    );
    let mut seen = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let line: u64 = record[0].parse().unwrap();
        let index = (line - 2) as usize;
        assert_eq!(record[1], data[index].transaction_id.to_string());
        let score: f64 = record[2].parse().unwrap();
        assert!((score - expected[index]).abs() < 1e-6, "line {line}");
        seen += 1;
    }
    assert_eq!(seen, 9_997);
}

#[test]
fn an_ndjson_file_is_scored_to_ndjson_or_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = transactions(300, 32);
    let mut lines: Vec<String> = data
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    lines.insert(3, "{\"amount\": 1}".into());
    lines.insert(7, String::new());
    std::fs::write(dir.path().join("in.ndjson"), lines.join("\n")).unwrap();

    let summary =
        batch::score_file(&loaded(), &options(dir.path(), "in.ndjson", "out.ndjson")).unwrap();
    assert_eq!(
        (summary.rows, summary.scored, summary.failed),
        (301, 300, 1)
    );
    let errors = std::fs::read_to_string(summary.errors.unwrap()).unwrap();
    assert_eq!(
        errors.trim(),
        r#"{"line":4,"error":"merchant_category: is missing"}"#
    );
    let out: Vec<Value> = std::fs::read_to_string(dir.path().join("out.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 300);
    assert_eq!(out[0]["line"], 1);
    assert_eq!(out[3]["line"], 5, "line 4 was bad");
    assert_eq!(out[3]["id"], data[3].transaction_id);

    // The same input to CSV; an earlier error report is replaced, not appended to.
    let summary =
        batch::score_file(&loaded(), &options(dir.path(), "in.ndjson", "out.csv")).unwrap();
    assert_eq!(summary.scored, 300);
    let csv_out = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert!(
        csv_out.starts_with("line,transaction_id,score\n1,1,"),
        "{}",
        &csv_out[..40]
    );

    // A clean file leaves no error report behind.
    lines.remove(3);
    std::fs::write(dir.path().join("in.ndjson"), lines.join("\n")).unwrap();
    let summary =
        batch::score_file(&loaded(), &options(dir.path(), "in.ndjson", "out.ndjson")).unwrap();
    assert_eq!((summary.failed, summary.errors), (0, None));
    assert!(!dir.path().join("out.ndjson.errors.ndjson").exists());
}

#[test]
fn a_csv_without_a_feature_column_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "amount,hour\n1,2\n").unwrap();
    let err = batch::score_file(&loaded(), &options(dir.path(), "in.csv", "out.csv")).unwrap_err();
    assert!(
        err.to_string().contains("no column `merchant_category`"),
        "{err}"
    );
}
