//! The Prometheus rules in `monitoring/prometheus/`: promtool (Debian's `prometheus`
//! package) accepts the rule files and the scrape configuration and passes the rule
//! unit tests in `monitoring/prometheus/tests/`; every alert carries what the runbook
//! and Alertmanager routing need, and is tested both firing and not firing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use outrider_harness::alertmanager::scorer_alert_names;
use outrider_harness::paths::repo_root;
use serde_json::Value;

/// The alerts only Prometheus can compute; the rules also define every alert the scorer
/// raises itself (`alerts::NAMES`), under the same names.
const PROMETHEUS_ONLY: [&str; 7] = [
    "OutriderCanaryFailing",
    "OutriderShadowDisagreement",
    "OutriderStateStale",
    "OutriderTelemetryDropped",
    "OutriderScorerDown",
    "OutriderNoLeader",
    "OutriderTrafficBypassesFilter",
];

fn monitoring() -> PathBuf {
    repo_root().join("monitoring/prometheus")
}

/// Runs promtool with `args` in `monitoring/prometheus`; fails with its output.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (run `make setup`, which installs Debian's prometheus)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(monitoring().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.yaml in monitoring/prometheus/tests"
    );
    files
}

/// The alerting rules: (group, rule) for each.
fn alert_rules() -> Vec<(String, Value)> {
    let rules = yaml(&monitoring().join("rules/alerts.yaml"));
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("alerts.yaml: groups") {
        for rule in group["rules"]
            .as_array()
            .expect("alerts.yaml: a group's rules")
        {
            out.push((
                group["name"].as_str().unwrap_or("").to_owned(),
                rule.clone(),
            ));
        }
    }
    out
}

/// A string constant of a Rust source file, `NAME: &str = "value"`.
fn rust_str_const(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let marker = format!("{name}: &str = \"");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} not in {file}"))
        + marker.len();
    text[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_configuration() {
    let out = promtool(&[
        "check",
        "rules",
        "rules/recording.yaml",
        "rules/alerts.yaml",
    ]);
    assert!(out.contains("SUCCESS"), "{out}");
    promtool(&["check", "config", "prometheus.yaml"]);
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let files = test_files();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut args = vec!["test", "rules"];
    args.extend(names.iter().map(String::as_str));
    let out = promtool(&args);
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");
}

#[test]
fn every_alert_has_its_labels_annotations_and_runbook_section_and_is_tested_both_ways() {
    let base = rust_str_const("sidecar-scorer/src/config.rs", "DEFAULT_RUNBOOK_URL");
    let mut defined = BTreeSet::new();
    let mut problems = Vec::new();
    for (group, rule) in alert_rules() {
        let Some(name) = rule["alert"].as_str() else {
            problems.push(format!(
                "group {group}: a rule without `alert` in alerts.yaml"
            ));
            continue;
        };
        defined.insert(name.to_owned());
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        if !["critical", "warning", "info"].contains(&severity) {
            problems.push(format!("{name}: labels.severity is {severity:?}"));
        }
        for field in ["summary", "description"] {
            if rule["annotations"][field]
                .as_str()
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{name}: no annotations.{field}"));
            }
        }
        let expected = format!("{base}#{}", name.to_lowercase());
        if rule["annotations"]["runbook_url"] != expected.as_str() {
            problems.push(format!(
                "{name}: annotations.runbook_url is {}, not {expected:?}",
                rule["annotations"]["runbook_url"]
            ));
        }
    }
    let scorer_alerts = scorer_alert_names();
    assert!(
        scorer_alerts.len() >= 13,
        "alerts::NAMES read as {scorer_alerts:?}"
    );
    let wanted: BTreeSet<String> = scorer_alerts
        .iter()
        .cloned()
        .chain(PROMETHEUS_ONLY.iter().map(|s| (*s).to_owned()))
        .collect();
    for missing in wanted.difference(&defined) {
        problems.push(format!("{missing}: no rule in alerts.yaml"));
    }
    for extra in defined.difference(&wanted) {
        problems.push(format!(
            "{extra}: in alerts.yaml but not among the alerts this test knows"
        ));
    }

    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for file in test_files() {
        let doc = yaml(&file);
        for test in doc["tests"].as_array().into_iter().flatten() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or("").to_owned();
                match case["exp_alerts"].as_array() {
                    Some(a) if !a.is_empty() => {
                        for alert in a {
                            for field in ["summary", "description", "runbook_url"] {
                                if alert["exp_annotations"][field].as_str().is_none() {
                                    problems.push(format!(
                                        "{}: a firing case of {name} does not assert annotations.{field}",
                                        file.display()
                                    ));
                                }
                            }
                            if alert["exp_labels"]["severity"].as_str().is_none() {
                                problems.push(format!(
                                    "{}: a firing case of {name} does not assert its severity",
                                    file.display()
                                ));
                            }
                        }
                        firing.insert(name)
                    }
                    _ => quiet.insert(name),
                };
            }
        }
    }
    for name in &defined {
        if !firing.contains(name) {
            problems.push(format!("{name}: no promtool test where it fires"));
        }
        if !quiet.contains(name) {
            problems.push(format!("{name}: no promtool test where it must not fire"));
        }
    }
    assert!(
        problems.is_empty(),
        "monitoring/prometheus:\n{}",
        problems.join("\n")
    );
}
