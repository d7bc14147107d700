//! Envoy bootstraps built in code, so every test can choose its rollout, its filter
//! configuration and its ports (0: Envoy picks a free one and the admin API says
//! which). The committed configs in `envoy/` are the readable form of the same shape.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use outrider_filter_logic::metric_names::STATS_TAGS;
use serde_json::{Value, json};

/// The name of the listener that carries traffic.
pub const LISTENER: &str = "outrider";

/// Latency buckets (ms) for the filter's upstream latency histogram: finer than
/// Envoy's defaults where model latencies live.
pub const LATENCY_BUCKETS_MS: [f64; 22] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    500.0, 750.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// An upstream cluster with one endpoint.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub addr: SocketAddr,
    /// Speak HTTP/2 (h2c) to the upstream, as gRPC needs.
    pub http2: bool,
}

impl Cluster {
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            http2: false,
        }
    }

    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }
}

/// How the route table picks a cluster.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Every request to one cluster.
    Plain { cluster: String },
    /// Envoy's native `weighted_clusters` (weights out of their sum).
    Weighted { clusters: Vec<(String, u32)> },
    /// One route per value of the routing header that the filter sets; requests
    /// without it go to `default`.
    ByHeader {
        header: String,
        routes: Vec<(String, String)>,
        default: String,
    },
}

/// A wasm HTTP filter in front of the router.
#[derive(Debug, Clone)]
pub enum Wasm {
    /// The outrider filter with its JSON configuration and VM environment.
    Outrider {
        path: PathBuf,
        config: String,
        vm_env: Vec<(String, String)>,
    },
    /// A filter that does nothing, for benchmarks.
    Passthrough { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub routing: Routing,
    pub wasm: Option<Wasm>,
    pub clusters: Vec<Cluster>,
}

impl Spec {
    /// The usual shape: the outrider filter configured with `config`, one cluster
    /// per variant named after it, and a route per variant's routing header value.
    /// Requests without the header go to the first variant.
    pub fn rollout(filter_wasm: &Path, config: &Value, clusters: Vec<Cluster>) -> Result<Self> {
        let header = config
            .get("routing_header")
            .and_then(Value::as_str)
            .unwrap_or("x-outrider-variant")
            .to_ascii_lowercase();
        let variants = config
            .get("variants")
            .and_then(Value::as_array)
            .context("the filter configuration has no `variants` array")?;
        let mut routes = Vec::new();
        for v in variants {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .context("variant without a name")?;
            let value = v
                .get("header_value")
                .and_then(Value::as_str)
                .unwrap_or(name);
            routes.push((value.to_owned(), name.to_owned()));
        }
        let default = routes
            .first()
            .map(|(_, c)| c.clone())
            .context("no variants")?;
        Ok(Self {
            routing: Routing::ByHeader {
                header,
                routes,
                default,
            },
            wasm: Some(Wasm::Outrider {
                path: filter_wasm.to_owned(),
                config: config.to_string(),
                vm_env: Vec::new(),
            }),
            clusters,
        })
    }

    /// The listener resource, as in a static bootstrap or an LDS document.
    pub fn listener(&self) -> Value {
        let mut http_filters = Vec::new();
        if let Some(wasm) = &self.wasm {
            http_filters.push(wasm_filter(wasm));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        json!({
            "name": LISTENER,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "ingress",
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": "models",
                        "virtual_hosts": [{"name": "models", "domains": ["*"], "routes": self.routes()}]
                    },
                    "http_filters": http_filters
                }
            }]}]
        })
    }

    fn routes(&self) -> Vec<Value> {
        match &self.routing {
            Routing::Plain { cluster } => {
                vec![json!({"match": {"prefix": "/"}, "route": {"cluster": cluster}})]
            }
            Routing::Weighted { clusters } => {
                let weighted: Vec<Value> = clusters
                    .iter()
                    .map(|(name, weight)| json!({"name": name, "weight": weight}))
                    .collect();
                vec![json!({"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": weighted}}})]
            }
            Routing::ByHeader {
                header,
                routes,
                default,
            } => routes
                .iter()
                .map(|(value, cluster)| {
                    json!({
                        "match": {"prefix": "/", "headers": [{"name": header, "string_match": {"exact": value}}]},
                        "route": {"cluster": cluster}
                    })
                })
                .chain(std::iter::once(
                    json!({"match": {"prefix": "/"}, "route": {"cluster": default}}),
                ))
                .collect(),
        }
    }

    fn clusters(&self) -> Vec<Value> {
        self.clusters.iter().map(cluster).collect()
    }

    /// A bootstrap with everything static.
    pub fn bootstrap(&self) -> Value {
        let mut b = base_bootstrap(self.clusters());
        b["static_resources"]["listeners"] = json!([self.listener()]);
        b
    }

    /// A bootstrap whose listener comes from an LDS file in `dir`, so a test can
    /// change the filter configuration while Envoy runs (see [`write_lds`]).
    pub fn bootstrap_with_lds(&self, dir: &Path) -> Result<Value> {
        write_lds(dir, &self.listener(), "1")?;
        let mut b = base_bootstrap(self.clusters());
        b["node"] = json!({"id": "outrider-test", "cluster": "outrider-test"});
        b["dynamic_resources"] = json!({"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": lds_path(dir),
                "watched_directory": {"path": dir}
            }
        }});
        Ok(b)
    }
}

fn lds_path(dir: &Path) -> PathBuf {
    dir.join("lds.json")
}

/// Replaces the LDS document atomically (write, then rename into the watched
/// directory), which is what makes Envoy reload it.
pub fn write_lds(dir: &Path, listener: &Value, version: &str) -> Result<()> {
    let mut resource = listener.clone();
    resource["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    let document = json!({"version_info": version, "resources": [resource]});
    let tmp = dir.join(".lds.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&document)?)?;
    std::fs::rename(&tmp, lds_path(dir))?;
    Ok(())
}

/// The `stats_config` that turns the filter's name segments into labels.
pub fn stats_config() -> Value {
    let tags: Vec<Value> = STATS_TAGS
        .iter()
        .map(|(tag, regex)| json!({"tag_name": tag, "regex": regex}))
        .collect();
    json!({
        "stats_tags": tags,
        "histogram_bucket_settings": [{
            "match": {"prefix": "wasmcustom.outrider.upstream_rq_time"},
            "buckets": LATENCY_BUCKETS_MS
        }]
    })
}

fn base_bootstrap(clusters: Vec<Value>) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_config": stats_config(),
        "stats_flush_interval": "1s",
        "static_resources": {"listeners": [], "clusters": clusters}
    })
}

fn cluster(c: &Cluster) -> Value {
    let mut value = json!({
        "name": c.name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": c.name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": c.addr.ip().to_string(), "port_value": c.addr.port()}
        }}}]}]}
    });
    if c.http2 {
        value["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    value
}

fn wasm_filter(wasm: &Wasm) -> Value {
    let (name, path, configuration, vm_env) = match wasm {
        Wasm::Outrider {
            path,
            config,
            vm_env,
        } => ("outrider", path, config.as_str(), vm_env.as_slice()),
        Wasm::Passthrough { path } => ("passthrough", path, "", &[][..]),
    };
    let mut vm_config = json!({
        "vm_id": name,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": path}}
    });
    if !vm_env.is_empty() {
        let values: serde_json::Map<String, Value> =
            vm_env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        vm_config["environment_variables"] = json!({"key_values": values});
    }
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration
                }
            }
        }
    })
}
