//! The Istio manifests in `istio/`: each Istio resource validates against the CRD
//! schema of its kind and version (with unknown fields refused, as `kubectl
//! --validate=strict` does), and the pieces agree with each other: the WasmPlugin's
//! `pluginConfig` is a valid filter configuration, the VirtualService routes every
//! variant's header value to a subset the DestinationRule defines, and the bootstrap
//! override carries the filter's stats tags.

use std::path::PathBuf;

use outrider_filter_logic::Rollout;
use outrider_filter_logic::metric_names::STATS_TAGS;
use outrider_harness::paths;
use serde_json::{Value, json};

fn crds_path() -> PathBuf {
    std::env::var_os("OUTRIDER_ISTIO_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::repo_root().join("../shared/istio/crds.yaml"))
}

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn manifests() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(paths::repo_root().join("istio")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for doc in documents(&std::fs::read_to_string(&path).unwrap()) {
                found.push((name.clone(), doc));
            }
        }
    }
    found
}

/// Objects that list their properties and do not preserve unknown fields are closed,
/// as the API server treats them under strict field validation.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties")
                && !preserves
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

struct Crds(Vec<Value>);

impl Crds {
    fn load() -> Self {
        let path = crds_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "Istio CRD schemas at {}: {e} (set OUTRIDER_ISTIO_CRDS)",
                path.display()
            )
        });
        Self(documents(&text))
    }

    /// The schema of `spec` for a kind at an apiVersion such as `networking.istio.io/v1`.
    fn spec_schema(&self, api_version: &str, kind: &str) -> Option<Value> {
        let (group, version) = api_version.split_once('/')?;
        let crd = self
            .0
            .iter()
            .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)?;
        let version = crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == version)?;
        let mut schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
        close_objects(&mut schema);
        Some(schema)
    }

    fn errors(&self, manifest: &Value) -> Vec<String> {
        let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
        let kind = manifest["kind"].as_str().unwrap_or_default();
        let Some(schema) = self.spec_schema(api_version, kind) else {
            return vec![format!("no CRD for {kind} {api_version}")];
        };
        let validator = jsonschema::validator_for(&schema).unwrap();
        validator
            .iter_errors(&manifest["spec"])
            .map(|e| format!("spec{}: {e}", e.instance_path()))
            .collect()
    }
}

fn is_istio(manifest: &Value) -> bool {
    manifest["apiVersion"]
        .as_str()
        .is_some_and(|v| v.contains(".istio.io/"))
}

fn find<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    &all.iter()
        .find(|(_, m)| m["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in istio/"))
        .1
}

fn named<'a>(all: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    &all.iter()
        .find(|(_, m)| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in istio/"))
        .1
}

#[test]
fn istio_resources_validate_against_their_crd_schemas() {
    let crds = Crds::load();
    let all = manifests();
    let istio: Vec<&(String, Value)> = all.iter().filter(|(_, m)| is_istio(m)).collect();
    assert!(istio.len() >= 3, "{} Istio resources", istio.len());
    for (file, manifest) in istio {
        let errors = crds.errors(manifest);
        assert!(errors.is_empty(), "{file}: {errors:#?}");
    }
}

#[test]
fn the_validation_catches_mistakes() {
    let crds = Crds::load();
    let all = manifests();
    let mut typo = find(&all, "WasmPlugin").clone();
    let config = typo["spec"]["pluginConfig"].take();
    typo["spec"]["pluginConfg"] = config;
    assert!(
        crds.errors(&typo).iter().any(|e| e.contains("pluginConfg")),
        "{:?}",
        crds.errors(&typo)
    );
    let mut bad_enum = find(&all, "WasmPlugin").clone();
    bad_enum["spec"]["failStrategy"] = json!("FAIL_SOMETIMES");
    assert!(!crds.errors(&bad_enum).is_empty());
    let mut wrong_type = find(&all, "VirtualService").clone();
    wrong_type["spec"]["hosts"] = json!("not-a-list");
    assert!(!crds.errors(&wrong_type).is_empty());
}

#[test]
fn the_manifests_agree_with_each_other() {
    let all = manifests();
    let plugin = find(&all, "WasmPlugin");
    let rollout = Rollout::from_json(
        plugin["spec"]["pluginConfig"].to_string().as_bytes(),
        |name| {
            let forwarded = plugin["spec"]["vmConfig"]["env"]
                .as_array()?
                .iter()
                .any(|e| e["name"] == name);
            forwarded.then(|| "a-secret-from-the-gateway-environment".to_owned())
        },
    )
    .unwrap();

    let rule = find(&all, "DestinationRule");
    let subsets: Vec<&str> = rule["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    // Both VirtualServices (with and without Istio's own mirroring) route every variant.
    for service in [
        named(&all, "VirtualService", "fraud-model"),
        named(&all, "VirtualService", "fraud-model-mirrored"),
    ] {
        let routes = service["spec"]["http"].as_array().unwrap();
        for variant in &rollout.variants {
            assert!(
                subsets.contains(&variant.name.as_str()),
                "no subset for {}",
                variant.name
            );
            let routed = routes.iter().any(|r| {
                let matches_header = r["match"].as_array().is_some_and(|m| {
                    m.iter().any(|m| {
                        m["headers"][&rollout.routing_header]["exact"]
                            == variant.header_value.as_str()
                    })
                });
                let unconditional = r.get("match").is_none();
                let to_subset = r["route"][0]["destination"]["subset"] == variant.name.as_str();
                to_subset
                    && (matches_header
                        || (unconditional && variant.name == rollout.variants[0].name))
            });
            assert!(
                routed,
                "no route sends `{}: {}` to subset {}",
                rollout.routing_header, variant.header_value, variant.name
            );
        }
        for route in routes {
            if let Some(subset) = route["mirror"]["subset"].as_str() {
                assert!(
                    subsets.contains(&subset),
                    "mirror to unknown subset {subset}"
                );
            }
        }
    }

    // The scorer cluster the filter calls is the scorer's Service.
    let link = rollout
        .scorer
        .as_ref()
        .expect("the WasmPlugin links the filter to the scorer");
    let parts: Vec<&str> = link.cluster.split('|').collect();
    assert_eq!(
        (parts.len(), parts[0]),
        (4, "outbound"),
        "Istio names service clusters outbound|port||host: {}",
        link.cluster
    );
    let (port, host) = (parts[1].parse::<u64>().unwrap(), parts[3]);
    let service = find(&all, "Service");
    let name = service["metadata"]["name"].as_str().unwrap();
    let namespace = service["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(host, format!("{name}.{namespace}.svc.cluster.local"));
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == port),
        "the Service exposes {port}"
    );
    assert_eq!(link.authority, host);

    let bootstrap = find(&all, "ConfigMap");
    let custom: Value =
        serde_json::from_str(bootstrap["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    let tags: Vec<(String, String)> = custom["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag_name"].as_str().unwrap().to_owned(),
                t["regex"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = STATS_TAGS
        .iter()
        .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(tags, expected);
}
