//! A rollout under test: one stand-in per variant and Envoy with the outrider filter
//! in front of them.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use outrider_filter_logic::{RequestHeaders, Rollout};
use serde_json::Value;

use crate::bootstrap::{Cluster, LISTENER, Spec, Wasm};
use crate::envoy::Envoy;
use crate::paths;
use crate::standin::{Behaviour, StandIn};

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
        Self::start_with_stand_ins(config, concurrency, Behaviour::default(), adjust).await
    }

    /// Like [`Self::start_with`], with stand-ins that behave as `behaviour` says.
    pub async fn start_with_stand_ins(
        config: Value,
        concurrency: u32,
        behaviour: Behaviour,
        adjust: impl FnOnce(&mut Spec),
    ) -> Result<Self> {
        let mut standins = Vec::new();
        let mut clusters = Vec::new();
        for name in variant_names(&config)? {
            let standin =
                StandIn::start_on(&name, SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await?;
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

/// The variant the filter's own decision logic picks for a sticky key under
/// `config` (no override, key in the default `x-user-id` header): the reference the
/// end-to-end tests hold Envoy to.
pub fn expected_variant(config: &Value, key: &str) -> Result<String> {
    struct KeyOnly<'a>(&'a str);
    impl RequestHeaders for KeyOnly<'_> {
        fn get(&self, name: &str) -> Option<String> {
            (name == "x-user-id").then(|| self.0.to_owned())
        }
    }
    // Override secrets play no part in hashing; any value satisfies `secrets_env`.
    let rollout = Rollout::from_json(config.to_string().as_bytes(), |_| Some("-".repeat(32)))?;
    let decision = rollout.decide(&KeyOnly(key), || 0, || 0.0);
    Ok(rollout.variants[decision.variant].name.clone())
}

/// A committed config with its fixed ports replaced (`from` -> `to`; 0 lets Envoy
/// choose), written to `dir`, so tests can run the very file users run.
pub fn with_ports(
    config: &std::path::Path,
    ports: &[(u16, u16)],
    dir: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let mut text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    for (from, to) in ports {
        let needle = format!("port_value: {from}}}");
        anyhow::ensure!(
            text.contains(&needle),
            "{} has no `{needle}`",
            config.display()
        );
        text = text.replace(&needle, &format!("port_value: {to}}}"));
    }
    let name = config.file_name().context("config without a file name")?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
