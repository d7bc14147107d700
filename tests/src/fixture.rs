//! A rollout under test: one stand-in per variant and Envoy with the outrider filter
//! in front of them.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bootstrap::{Cluster, LISTENER, Spec, Wasm};
use crate::envoy::Envoy;
use crate::paths;
use crate::standin::StandIn;

pub struct RolloutUnderTest {
    pub envoy: Envoy,
    pub standins: Vec<StandIn>,
    /// Base URL of Envoy's traffic listener.
    pub url: String,
    pub spec: Spec,
}

/// The variant names of a filter configuration, in order.
pub fn variant_names(config: &Value) -> Result<Vec<String>> {
    config["variants"]
        .as_array()
        .context("no variants")?
        .iter()
        .map(|v| {
            v["name"]
                .as_str()
                .map(str::to_owned)
                .context("variant without a name")
        })
        .collect()
}

impl RolloutUnderTest {
    /// Starts a stand-in per variant of `config` and Envoy with `concurrency` workers.
    pub async fn start(config: Value, concurrency: u32) -> Result<Self> {
        Self::start_with(config, concurrency, |_| {}).await
    }

    /// Like [`Self::start`], with a chance to adjust the spec (clusters, VM env...).
    pub async fn start_with(
        config: Value,
        concurrency: u32,
        adjust: impl FnOnce(&mut Spec),
    ) -> Result<Self> {
        let mut standins = Vec::new();
        let mut clusters = Vec::new();
        for name in variant_names(&config)? {
            let standin = StandIn::start(&name).await?;
            clusters.push(Cluster::new(&name, standin.addr));
            standins.push(standin);
        }
        let mut spec = Spec::rollout(&paths::filter_wasm()?, &config, clusters)?;
        adjust(&mut spec);
        let envoy = Envoy::start(&spec.bootstrap(), concurrency).await?;
        let url = envoy.url(LISTENER).await?;
        Ok(Self {
            envoy,
            standins,
            url,
            spec,
        })
    }

    pub fn standin(&self, name: &str) -> &StandIn {
        self.standins
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stand-in {name}"))
    }
}

impl Spec {
    /// Sets environment variables of the outrider filter's VM.
    pub fn set_vm_env(&mut self, env: &[(&str, &str)]) {
        if let Some(Wasm::Outrider { vm_env, .. }) = &mut self.wasm {
            *vm_env = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        }
    }
}
