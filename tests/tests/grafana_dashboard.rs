//! The Grafana dashboard `monitoring/grafana/outrider.json`: type-checked against
//! Grafana's own dashboard schema, the TypeScript types of `@grafana/schema` (pinned in
//! `monitoring/grafana/package.json`, installed by `make setup`), as an object literal
//! so that an unknown field is an error too; and checked for what a user of it needs:
//! Grafana 10+, the data source as a variable that every query uses, the variables
//! and panels it promises. Its queries are run against live metrics by the scorer's
//! `prometheus_queries` test.

use std::collections::BTreeSet;
use std::process::Command;

use outrider_harness::paths::repo_root;
use serde_json::Value;

fn dashboard() -> Value {
    let path = repo_root().join("monitoring/grafana/outrider.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `tsc` on the dashboard as a `Dashboard` literal: whether it passes, and what
/// tsc said.
fn type_check(dashboard: &Value) -> (bool, String) {
    let grafana = repo_root().join("monitoring/grafana");
    let tsc = grafana.join("node_modules/.bin/tsc");
    let schema = grafana.join("node_modules/@grafana/schema/dist/types/index.d.ts");
    assert!(
        tsc.exists() && schema.exists(),
        "{} or {} missing: run `make setup`",
        tsc.display(),
        schema.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let literal = serde_json::to_string_pretty(dashboard).unwrap();
    std::fs::write(
        dir.path().join("dashboard.ts"),
        format!(
            "import type {{ Dashboard }} from \"@grafana/schema\";\nexport const dashboard: Dashboard = {literal};\n"
        ),
    )
    .unwrap();
    let tsconfig = serde_json::json!({
        "compilerOptions": {
            "strict": true, "noEmit": true, "target": "es2022", "module": "esnext",
            "moduleResolution": "bundler", "skipLibCheck": true,
            "paths": {"@grafana/schema": [schema.display().to_string()]}
        },
        "files": ["dashboard.ts"]
    });
    std::fs::write(dir.path().join("tsconfig.json"), tsconfig.to_string()).unwrap();
    let out = Command::new(&tsc)
        .args(["--project", "tsconfig.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_dashboard_type_checks_against_grafanas_schema() {
    let (ok, text) = type_check(&dashboard());
    assert!(
        ok,
        "monitoring/grafana/outrider.json does not match Grafana's Dashboard type:\n{text}"
    );
}

/// The check above can fail: a misspelt field, or a field of the wrong type, is refused.
#[test]
fn the_type_check_refuses_an_unknown_field_and_a_wrong_type() {
    let mut d = dashboard();
    d["panels"][1]["titel"] = "typo".into();
    let (ok, text) = type_check(&d);
    assert!(!ok && text.contains("titel"), "{text}");
    let mut d = dashboard();
    d["schemaVersion"] = "39".into();
    let (ok, text) = type_check(&d);
    assert!(
        !ok && text.contains("not assignable to type 'number'"),
        "{text}"
    );
}

#[test]
fn the_dashboard_is_for_grafana_10_with_its_data_source_as_a_variable() {
    let d = dashboard();
    let version = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        version >= 38,
        "schemaVersion {version}: Grafana 10 writes 38 or later"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("datasource");
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    for name in ["rollout", "variant", "model"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert!(
            v["query"]["query"]
                .as_str()
                .is_some_and(|q| q.starts_with("label_values(")),
            "{name}"
        );
    }
    let wanted = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("a panel without a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id repeated"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{title}: gridPos {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        titles.push(title.to_owned());
        assert_eq!(p["datasource"], wanted, "{title}: its data source");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], wanted, "{title}: a query's data source");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: no expr"
            );
            assert!(t["refId"].is_string(), "{title}: no refId");
        }
    }
    for promised in [
        "Traffic share per variant",
        "5xx share per variant",
        "Latency per variant (p50, p99)",
        "Shadow agreement",
        "Drift per feature (PSI)",
        "Estimated vs realised performance",
        "Rollout state",
        "Guardrail trips",
    ] {
        assert!(
            titles.iter().any(|t| t == promised),
            "no panel {promised:?}: {titles:?}"
        );
    }
}
