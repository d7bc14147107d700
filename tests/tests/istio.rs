//! The manifests in `istio/`: each Istio resource validates against the CRD schema of
//! its kind and version, and each Kubernetes core resource (Deployment, Service,
//! PodDisruptionBudget...) against the Kubernetes JSON schema of its kind, both with
//! unknown fields refused, as `kubectl --validate=strict` does; a strategic-merge patch
//! validates once applied to a workload. The pieces agree with each other: the
//! WasmPlugins' `pluginConfig` and the EnvoyFilters' configuration are one valid filter
//! configuration, the EnvoyFilters' wasm filter loads in the real Envoy, the
//! VirtualService routes every variant's header value to a subset the DestinationRule
//! defines, the scorer's Deployment, Service and PodDisruptionBudget select the same
//! pods, and the bootstrap override carries the filter's stats tags. The filter's OCI
//! image (`make wasm-image`) is checked blob by blob.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use outrider_filter_logic::Rollout;
use outrider_harness::bootstrap::stats_config;
use outrider_harness::envoy::Envoy;
use outrider_harness::paths;
use outrider_harness::wasm_image;
use serde_json::{Value, json};

/// Kubernetes releases whose schemas the core resources must pass: an older one still in
/// use and the newest the pinned `kubernetes-validate` carries.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

const VM_ENV: [(&str, &str); 2] = [
    (
        "OUTRIDER_OVERRIDE_SECRET",
        "a-test-secret-for-validation-0001",
    ),
    ("OUTRIDER_TELEMETRY_TOKEN", "a-test-telemetry-token-000001"),
];

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
    let mut typo = named(&all, "WasmPlugin", "outrider-fraud").clone();
    let config = typo["spec"]["pluginConfig"].take();
    typo["spec"]["pluginConfg"] = config;
    assert!(
        crds.errors(&typo).iter().any(|e| e.contains("pluginConfg")),
        "{:?}",
        crds.errors(&typo)
    );
    let mut bad_enum = named(&all, "WasmPlugin", "outrider-fraud").clone();
    bad_enum["spec"]["failStrategy"] = json!("FAIL_SOMETIMES");
    assert!(!crds.errors(&bad_enum).is_empty());
    let mut wrong_type = find(&all, "VirtualService").clone();
    wrong_type["spec"]["hosts"] = json!("not-a-list");
    assert!(!crds.errors(&wrong_type).is_empty());
}

#[test]
fn the_manifests_agree_with_each_other() {
    let all = manifests();
    let plugin = named(&all, "WasmPlugin", "outrider-fraud");
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
    let service = named(&all, "Service", "outrider-scorer");
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

    let bootstrap = named(&all, "ConfigMap", "outrider-stats-tags");
    let custom: Value =
        serde_json::from_str(bootstrap["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        custom["stats_config"]["stats_tags"],
        stats_config()["stats_tags"]
    );
}

/// A workload (apps/v1) in a `*-patch.yaml` file is a strategic-merge patch, not a
/// whole resource.
fn is_patch(file: &str, manifest: &Value) -> bool {
    file.ends_with("-patch.yaml") && manifest["apiVersion"] == "apps/v1"
}

/// Kubernetes' strategic merge, as far as the patches here use it: objects merge key by
/// key, lists of named objects (containers, volumes, env) merge by `name`, anything
/// else is replaced.
fn strategic_merge(base: &mut Value, patch: &Value) {
    let named = |items: &[Value]| items.iter().all(|i| i["name"].is_string());
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(existing) => strategic_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(patch)) if named(base) && named(patch) => {
            for item in patch {
                match base.iter_mut().find(|b| b["name"] == item["name"]) {
                    Some(existing) => strategic_merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// The workload a patch applies to, as a user might have it: one application container.
fn workload_for(patch: &Value) -> Value {
    let name = patch["metadata"]["name"].as_str().unwrap();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": patch["metadata"]["namespace"]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": name,
                    "image": format!("registry.internal/shop/{name}:1.0.0"),
                    "ports": [{"containerPort": 8080}],
                }]},
            },
        },
    })
}

fn applied(patch: &Value) -> Value {
    let mut workload = workload_for(patch);
    strategic_merge(&mut workload, patch);
    workload
}

/// The strict JSON schemas of one Kubernetes release (every object closed, as the API
/// server's strict field validation treats them), with their shared definitions.
struct KubeSchemas {
    version: &'static str,
    dir: PathBuf,
    registry: jsonschema::Registry<'static>,
}

impl KubeSchemas {
    fn load(version: &'static str) -> Self {
        let dir = paths::kubernetes_schemas(version).unwrap();
        let definitions: Value =
            serde_json::from_slice(&std::fs::read(dir.join("_definitions.json")).unwrap()).unwrap();
        let id = definitions["$id"].as_str().unwrap().to_owned();
        let registry = jsonschema::Registry::new()
            .add(id, definitions)
            .unwrap()
            .prepare()
            .unwrap();
        Self {
            version,
            dir,
            registry,
        }
    }

    /// `deployment-apps-v1.json` for apps/v1 Deployment, `service-v1.json` for v1 Service.
    fn schema_file(api_version: &str, kind: &str) -> String {
        let kind = kind.to_lowercase();
        match api_version.split_once('/') {
            Some((group, version)) => {
                let group = group.split('.').next().unwrap_or(group);
                format!("{kind}-{group}-{version}.json")
            }
            None => format!("{kind}-{api_version}.json"),
        }
    }

    fn errors(&self, manifest: &Value) -> Vec<String> {
        let api_version = manifest["apiVersion"].as_str().unwrap_or_default();
        let kind = manifest["kind"].as_str().unwrap_or_default();
        let path = self.dir.join(Self::schema_file(api_version, kind));
        let Ok(text) = std::fs::read(&path) else {
            return vec![format!(
                "no Kubernetes {} schema for {kind} {api_version} ({})",
                self.version,
                path.display()
            )];
        };
        let schema: Value = serde_json::from_slice(&text).unwrap();
        let validator = jsonschema::options()
            .with_registry(&self.registry)
            .build(&schema)
            .unwrap();
        validator
            .iter_errors(manifest)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// Every Kubernetes core resource, and every patch applied to its workload.
fn kubernetes_resources(all: &[(String, Value)]) -> Vec<(String, Value)> {
    all.iter()
        .filter(|(_, m)| !is_istio(m))
        .map(|(file, m)| {
            if is_patch(file, m) {
                (format!("{file} (applied)"), applied(m))
            } else {
                (file.clone(), m.clone())
            }
        })
        .collect()
}

#[test]
fn kubernetes_resources_validate_against_their_schemas() {
    let all = manifests();
    let resources = kubernetes_resources(&all);
    let kinds: std::collections::BTreeSet<&str> = resources
        .iter()
        .filter_map(|(_, m)| m["kind"].as_str())
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "no {kind} in istio/: {kinds:?}");
    }
    for version in KUBERNETES_VERSIONS {
        let schemas = KubeSchemas::load(version);
        for (file, manifest) in &resources {
            let errors = schemas.errors(manifest);
            assert!(
                errors.is_empty(),
                "{file}: {} {}, Kubernetes {version}: {errors:#?}",
                manifest["kind"],
                manifest["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_kubernetes_validation_catches_mistakes() {
    let all = manifests();
    let schemas = KubeSchemas::load(KUBERNETES_VERSIONS[1]);
    let scorer = named(&all, "Deployment", "outrider-scorer");
    let caught = |manifest: &Value, needle: &str| {
        let errors = schemas.errors(manifest);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "`{needle}` not among {errors:#?}"
        );
    };

    // An unknown field deep in the pod template.
    let mut typo = scorer.clone();
    let probe = typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"].take();
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = probe;
    caught(&typo, "readinessProbes");
    // Wrong types.
    let mut wrong_type = scorer.clone();
    wrong_type["spec"]["replicas"] = json!("3");
    caught(&wrong_type, "/spec/replicas");
    let mut service = named(&all, "Service", "outrider-scorer").clone();
    service["spec"]["ports"][0]["port"] = json!([8750]);
    caught(&service, "/spec/ports/0/port");
    // A missing required field.
    let mut no_selector = scorer.clone();
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    caught(&no_selector, "selector");
    // A typo in a patch shows once it is applied.
    let (file, patch) = all
        .iter()
        .find(|(f, m)| is_patch(f, m))
        .expect("a patch in istio/");
    let mut bad_patch = patch.clone();
    bad_patch["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = json!([]);
    caught(&applied(&bad_patch), "volumeMount");
    assert!(schemas.errors(&applied(patch)).is_empty(), "{file}");
    // A kind with no schema is an error, not a pass.
    let unknown = json!({"apiVersion": "v1", "kind": "Servce", "metadata": {"name": "x"}});
    caught(&unknown, "no Kubernetes");
}

fn filter_config(plugin: &Value) -> Value {
    match plugin["kind"].as_str() {
        Some("WasmPlugin") => plugin["spec"]["pluginConfig"].clone(),
        Some("EnvoyFilter") => {
            let value =
                wasm_http_filter(plugin)["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            serde_json::from_str(&value).unwrap()
        }
        other => panic!("not a filter: {other:?}"),
    }
}

/// The `envoy.filters.http.wasm` filter an EnvoyFilter inserts.
fn wasm_http_filter(envoy_filter: &Value) -> &Value {
    let patches = envoy_filter["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 1, "{}", envoy_filter["metadata"]["name"]);
    &patches[0]["patch"]["value"]
}

fn of_kind<'a>(all: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|(_, m)| m["kind"] == kind)
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn the_gateway_sidecar_and_envoyfilter_variants_run_one_filter_configuration() {
    let all = manifests();
    let gateway = named(&all, "WasmPlugin", "outrider-fraud");
    let sidecar = named(&all, "WasmPlugin", "outrider-fraud-callers");
    let expected = filter_config(gateway);
    let env_names = |plugin: &Value| -> Vec<String> {
        plugin["spec"]["vmConfig"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(filter_config(sidecar), expected);
    assert_eq!(env_names(sidecar), env_names(gateway));

    // The sidecar variant runs on the callers' outbound requests to the model's port.
    assert_eq!(sidecar["spec"]["match"][0]["mode"], "CLIENT");
    let model_port = &sidecar["spec"]["match"][0]["ports"][0]["number"];
    assert!(model_port.is_u64(), "{model_port}");
    assert!(gateway["spec"].get("match").is_none());

    let filters = of_kind(&all, "EnvoyFilter");
    assert_eq!(filters.len(), 2, "a gateway and a sidecar EnvoyFilter");
    for filter in filters {
        let name = &filter["metadata"]["name"];
        let patch = &filter["spec"]["configPatches"][0];
        assert_eq!(filter_config(filter), expected, "{name}");
        // Where each goes: the gateway's or the callers' proxies, before the router.
        let (plugin, context) = if filter["spec"]["workloadSelector"]["labels"]
            == gateway["spec"]["selector"]["matchLabels"]
        {
            (gateway, "GATEWAY")
        } else {
            (sidecar, "SIDECAR_OUTBOUND")
        };
        assert_eq!(
            filter["spec"]["workloadSelector"]["labels"], plugin["spec"]["selector"]["matchLabels"],
            "{name}"
        );
        assert_eq!(
            filter["metadata"]["namespace"], plugin["metadata"]["namespace"],
            "{name}"
        );
        assert_eq!(patch["applyTo"], "HTTP_FILTER", "{name}");
        assert_eq!(patch["match"]["context"], context, "{name}");
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE", "{name}");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router",
            "{name}"
        );
        if context == "SIDECAR_OUTBOUND" {
            assert_eq!(&patch["match"]["listener"]["portNumber"], model_port);
        }
        let vm = &wasm_http_filter(filter)["typed_config"]["config"]["vm_config"];
        let host_env: Vec<String> = vm["environment_variables"]["host_env_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(host_env, env_names(plugin), "{name}");
    }
}

/// Each EnvoyFilter's wasm filter, with the module of this build in place of the
/// proxy's mounted file, in an Envoy bootstrap that `envoy --mode validate` accepts:
/// the filter's proto fields and its configuration load as Istio's proxy would load them.
#[test]
fn the_envoyfilter_wasm_filters_load_in_envoy() {
    let all = manifests();
    let wasm = paths::filter_wasm().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for filter in of_kind(&all, "EnvoyFilter") {
        let name = filter["metadata"]["name"].as_str().unwrap();
        let mut http_filter = wasm_http_filter(filter).clone();
        let code = &mut http_filter["typed_config"]["config"]["vm_config"]["code"]["local"];
        assert!(code["filename"].is_string(), "{name}: {code}");
        code["filename"] = json!(wasm);
        // Istio names a service's cluster outbound|port||host; here it points nowhere.
        let cluster = filter_config(filter)["scorer"]["cluster"]
            .as_str()
            .unwrap()
            .to_owned();
        let bootstrap = json!({
            "static_resources": {
                "listeners": [{
                    "name": "outbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound",
                            "route_config": {"virtual_hosts": [{
                                "name": "all", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                            }]},
                            "http_filters": [
                                http_filter,
                                {"name": "envoy.filters.http.router", "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                            ],
                        },
                    }]}],
                }],
                "clusters": [{
                    "name": cluster,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8750}}}},
                    ]}]},
                }],
            },
        });
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, bootstrap.to_string()).unwrap();
        let output = Envoy::validate(&path, &VM_ENV).unwrap();
        assert!(output.contains("OK"), "{name}: {output}");
        // `fail_open` is kept for the older proxies EnvoyFilter is for; nothing else
        // deprecated.
        for line in output.lines().filter(|l| l.contains("Deprecated field")) {
            assert!(line.contains("PluginConfig.fail_open"), "{name}: {line}");
        }
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let args = container["args"].as_array()?;
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.as_str()
}

fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| &p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("port {other}"),
    }
}

#[test]
fn the_scorer_deployment_its_service_and_disruption_budget_agree() {
    let all = manifests();
    let deployment = named(&all, "Deployment", "outrider-scorer");
    let service = named(&all, "Service", "outrider-scorer");
    let budget = named(&all, "PodDisruptionBudget", "outrider-scorer");
    let account = named(&all, "ServiceAccount", "outrider-scorer");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];

    assert!(labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));
    assert!(labels_match(&service["spec"]["selector"], labels));
    assert!(labels_match(
        &budget["spec"]["selector"]["matchLabels"],
        labels
    ));
    let anti = &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert!(labels_match(&anti["labelSelector"]["matchLabels"], labels));
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    for (a, b) in [
        (service, deployment),
        (budget, deployment),
        (account, deployment),
    ] {
        assert_eq!(a["metadata"]["namespace"], b["metadata"]["namespace"]);
    }

    // Several replicas, on a shared PostgreSQL whose URL is a Secret's; the budget
    // leaves at least one of them up.
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "{replicas} replicas");
    let min_available = budget["spec"]["minAvailable"].as_u64().unwrap();
    assert!((1..replicas).contains(&min_available));
    let scorer = container(deployment, "scorer");
    let store = scorer["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "OUTRIDER_STORE")
        .expect("OUTRIDER_STORE");
    assert!(store["valueFrom"]["secretKeyRef"]["key"].is_string());
    assert!(
        flag(scorer, "--store").is_none(),
        "the store is the Secret's"
    );

    // The Service reaches the port the scorer listens on; the probes ask it too.
    let listen: std::net::SocketAddr = flag(scorer, "--listen").unwrap().parse().unwrap();
    assert!(listen.ip().is_unspecified(), "reachable from other pods");
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        container_port(scorer, &port["targetPort"]),
        u64::from(listen.port())
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &scorer[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            container_port(scorer, &get["port"]),
            u64::from(listen.port())
        );
    }
    assert!(scorer["resources"]["requests"]["cpu"].is_string());
    assert!(scorer["resources"]["limits"]["memory"].is_string());
    // A read-only root: every path it writes is a volume.
    let mounts: Vec<&str> = scorer["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(mounts.contains(&flag(scorer, "--jobs-dir").unwrap()));
}

#[test]
fn the_sidecar_scorer_patch_is_reachable_from_the_filter_beside_it() {
    let all = manifests();
    let (_, patch) = all
        .iter()
        .find(|(f, m)| is_patch(f, m))
        .expect("a patch in istio/");
    let workload = applied(patch);
    let scorer = container(&workload, "outrider-scorer");
    // SQLite on the pod's emptyDir.
    let store = flag(scorer, "--store").unwrap();
    let file = store.strip_prefix("sqlite:").unwrap_or(store);
    let volumes = workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let holds_store = scorer["volumeMounts"].as_array().unwrap().iter().any(|m| {
        file.starts_with(m["mountPath"].as_str().unwrap())
            && volumes
                .iter()
                .any(|v| v["name"] == m["name"] && v["emptyDir"].is_object())
    });
    assert!(holds_store, "{file} is not on an emptyDir");
    // The proxy (Istio's injected container, which the patch's `istio-proxy` merges
    // into) gets every variable the sidecar WasmPlugin's VM takes from it.
    let proxy_env: Vec<&Value> = container(&workload, "istio-proxy")["env"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let plugin = named(&all, "WasmPlugin", "outrider-fraud-callers");
    assert!(labels_match(
        &plugin["spec"]["selector"]["matchLabels"],
        &workload["spec"]["template"]["metadata"]["labels"]
    ));
    for env in plugin["spec"]["vmConfig"]["env"].as_array().unwrap() {
        assert_eq!(env["valueFrom"], "HOST");
        let given = proxy_env
            .iter()
            .find(|e| e["name"] == env["name"])
            .unwrap_or_else(|| panic!("the proxy has no {}", env["name"]));
        assert!(given["valueFrom"]["secretKeyRef"]["key"].is_string());
    }

    // The ServiceEntry makes `outbound|<port>||<host>` a cluster of this pod's proxy,
    // at the port the scorer listens on, on loopback.
    let entry = named(&all, "ServiceEntry", "outrider-scorer-local");
    assert_eq!(
        entry["metadata"]["namespace"],
        patch["metadata"]["namespace"]
    );
    let listen: std::net::SocketAddr = flag(scorer, "--listen").unwrap().parse().unwrap();
    assert_eq!(entry["spec"]["ports"][0]["number"], listen.port());
    assert_eq!(entry["spec"]["endpoints"][0]["address"], "127.0.0.1");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container_port(scorer, &scorer[probe]["httpGet"]["port"]),
            u64::from(listen.port())
        );
    }
    // The cluster name the patch's comment tells users to put in the filter's config.
    let cluster = format!(
        "outbound|{}||{}",
        listen.port(),
        entry["spec"]["hosts"][0].as_str().unwrap()
    );
    let text = std::fs::read_to_string(paths::repo_root().join("istio/scorer-sidecar-patch.yaml"))
        .unwrap();
    assert!(text.contains(&cluster), "the patch names {cluster}");
}

/// The files of a folder, by path relative to it.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn wasm_image(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outrider-wasm-image"))
        .args(args)
        .output()
        .unwrap()
}

/// A blob named by a descriptor, checked against the descriptor's digest and size.
fn blob(layout: &BTreeMap<String, Vec<u8>>, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = layout
        .get(&format!("blobs/sha256/{hex}"))
        .unwrap_or_else(|| panic!("no blob {digest}"))
        .clone();
    assert_eq!(wasm_image::digest(&bytes), digest, "the blob's bytes");
    assert_eq!(descriptor["size"], bytes.len(), "{digest}'s size");
    bytes
}

#[test]
fn make_wasm_image_writes_an_oci_image_istio_pulls_and_its_wasmplugin() {
    let wasm_path = paths::filter_wasm().unwrap();
    let wasm = std::fs::read(&wasm_path).unwrap();
    let reference = "registry.internal/outrider/outrider-filter:0.1.0";
    let plugin = paths::repo_root().join("istio/wasmplugin.yaml");
    let out = tempfile::tempdir().unwrap();
    let mut layouts = Vec::new();
    for run in ["a", "b"] {
        let layout = out.path().join(run).join("layout");
        let rendered = out.path().join(run).join("wasmplugin.yaml");
        let output = wasm_image(&[
            "--wasm",
            wasm_path.to_str().unwrap(),
            "--reference",
            reference,
            "--layout",
            layout.to_str().unwrap(),
            "--plugin",
            plugin.to_str().unwrap(),
            "--plugin-out",
            rendered.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{output:?}");
        layouts.push((tree(&layout), std::fs::read_to_string(&rendered).unwrap()));
    }
    // The same module gives the same bytes, so the digest is known before the push.
    assert_eq!(layouts[0], layouts[1], "the output is deterministic");
    let (layout, rendered) = &layouts[0];

    let oci_layout: Value = serde_json::from_slice(&layout["oci-layout"]).unwrap();
    assert_eq!(oci_layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value = serde_json::from_slice(&layout["index.json"]).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], wasm_image::INDEX_MEDIA_TYPE);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["mediaType"], wasm_image::MANIFEST_MEDIA_TYPE);
    assert_eq!(
        manifests[0]["annotations"][wasm_image::REF_NAME_ANNOTATION],
        "0.1.0"
    );

    let manifest_bytes = blob(layout, &manifests[0]);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], wasm_image::MANIFEST_MEDIA_TYPE);
    assert_eq!(
        manifest["annotations"][wasm_image::VARIANT_ANNOTATION.0],
        wasm_image::VARIANT_ANNOTATION.1
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        wasm_image::CONFIG_MEDIA_TYPE
    );
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "Istio's compat variant has one layer");
    assert_eq!(layers[0]["mediaType"], wasm_image::LAYER_MEDIA_TYPE);
    let layer = blob(layout, &layers[0]);

    // The layer is a gzip'd tar with plugin.wasm alone, the module byte for byte; the
    // config names the uncompressed tar.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [wasm_image::digest(&tar)]})
    );
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((path, bytes));
    }
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, wasm_image::PLUGIN_FILE);
    assert!(entries[0].1 == wasm, "plugin.wasm is the built module");
    // Nothing else in the layout.
    assert_eq!(layout.len(), 5, "{:?}", layout.keys().collect::<Vec<_>>());

    // The rendered WasmPlugin: the pushed image by tag, pinned by the manifest's digest
    // (what Istio compares `sha256` with for oci:// URLs, not the module's), valid, and
    // otherwise the WasmPlugin of istio/.
    let plugin_doc: Value = serde_saphyr::from_str(rendered).unwrap();
    assert_eq!(plugin_doc["spec"]["url"], format!("oci://{reference}"));
    let sha = plugin_doc["spec"]["sha256"].as_str().unwrap();
    assert_eq!(format!("sha256:{sha}"), wasm_image::digest(&manifest_bytes));
    assert_ne!(format!("sha256:{sha}"), wasm_image::digest(&wasm));
    let errors = Crds::load().errors(&plugin_doc);
    assert!(errors.is_empty(), "{errors:#?}");
    let mut original: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&plugin).unwrap()).unwrap();
    original["spec"]["sha256"] = json!(sha);
    assert_eq!(plugin_doc, original);
}

#[test]
fn make_wasm_image_refuses_bad_input_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\n").unwrap();
    let layout = dir.path().join("layout");
    let cases = [
        (
            not_wasm.to_str().unwrap(),
            "registry.internal/a/b:1",
            "--wasm",
        ),
        (
            not_wasm.to_str().unwrap(),
            "registry.internal/a/b",
            "--reference",
        ),
        (
            "/nonexistent/outrider_filter.wasm",
            "registry.internal/a/b:1",
            "--wasm",
        ),
    ];
    for (wasm, reference, flag) in cases {
        let output = wasm_image(&[
            "--wasm",
            wasm,
            "--reference",
            reference,
            "--layout",
            layout.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{wasm} {reference}");
        assert!(stderr.contains(flag), "{stderr}");
    }
    assert!(!layout.join("index.json").exists());
}

/// A private registry (Debian's `docker-registry`, the CNCF distribution registry) on a
/// free loopback port, stopped when dropped.
struct Registry {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Self {
        let binary = which("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Self {
            child,
            addr,
            _dir: dir,
        };
        let http = outrider_harness::client::HttpClient::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let up = http
                .get(&format!("http://{addr}/v2/"), &[])
                .await
                .is_ok_and(|r| r.status == 200);
            if up {
                return registry;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program from Debian's packages that `make setup` installs.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{program} not found on the PATH (run `make setup`)"))
}

/// The image pushed from the layout with an ordinary tool (skopeo) to a real registry
/// keeps its manifest's digest, which is what Istio reads for `spec.sha256`; the layer
/// it then serves holds the module, as Istio's fetcher extracts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_image_pushed_to_a_registry_keeps_the_digest_istio_checks() {
    let skopeo = which("skopeo");
    let registry = Registry::start().await;
    let wasm_path = paths::filter_wasm().unwrap();
    let wasm = std::fs::read(&wasm_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("outrider-filter");
    let rendered = dir.path().join("wasmplugin.yaml");
    let reference = format!("{}/outrider/outrider-filter:0.1.0", registry.addr);
    let output = wasm_image(&[
        "--wasm",
        wasm_path.to_str().unwrap(),
        "--reference",
        &reference,
        "--layout",
        layout.to_str().unwrap(),
        "--plugin",
        paths::repo_root()
            .join("istio/wasmplugin.yaml")
            .to_str()
            .unwrap(),
        "--plugin-out",
        rendered.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");

    // As docs/istio.md tells users to push it.
    let push = Command::new(skopeo)
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:0.1.0", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(push.status.success(), "{push:?}");

    let http = outrider_harness::client::HttpClient::new();
    let base = format!("http://{}/v2/outrider/outrider-filter", registry.addr);
    let manifest = http
        .get(
            &format!("{base}/manifests/0.1.0"),
            &[("accept", wasm_image::MANIFEST_MEDIA_TYPE)],
        )
        .await
        .unwrap();
    assert_eq!(manifest.status, 200);
    let plugin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
    let sha = plugin["spec"]["sha256"].as_str().unwrap();
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(format!("sha256:{sha}").as_str())
    );
    assert_eq!(wasm_image::digest(&manifest.body), format!("sha256:{sha}"));
    assert_eq!(plugin["spec"]["url"], format!("oci://{reference}"));

    let manifest: Value = serde_json::from_slice(&manifest.body).unwrap();
    let layer = &manifest["layers"][0];
    let blob = http
        .get(
            &format!("{base}/blobs/{}", layer["digest"].as_str().unwrap()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(blob.status, 200);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob.body[..]));
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        entry.path().unwrap().to_str(),
        Some(wasm_image::PLUGIN_FILE)
    );
    let mut module = Vec::new();
    entry.read_to_end(&mut module).unwrap();
    assert!(module == wasm, "the registry serves the built module");
}
