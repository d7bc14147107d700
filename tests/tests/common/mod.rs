//! Helpers shared by the end-to-end test files.

use std::path::Path;

use serde_json::Value;

/// The filter configuration embedded in a committed bootstrap.
pub fn embedded_filter_config(bootstrap: &Path) -> Value {
    let yaml: Value = serde_saphyr::from_str(&std::fs::read_to_string(bootstrap).unwrap()).unwrap();
    let filters = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    let wasm = filters
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .unwrap();
    serde_json::from_str(
        wasm["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}
