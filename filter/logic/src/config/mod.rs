//! The filter's JSON configuration (Envoy `configuration`, Istio `pluginConfig`), parsed
//! with serde and validated, once, into a [`Rollout`] that the request path uses as is.
//! Each section has its module: its raw form, its validated form and its checks.

mod error;
mod fields;
mod guardrail;
mod override_rule;
mod scorer;
mod shadow;
mod telemetry;

use outrider_protocol::json;
use outrider_protocol::rules::{self, MAX_VARIANTS};
use serde::Deserialize;

pub use error::ConfigError;
pub use fields::{check_name, weight_to_basis_points};
pub use guardrail::{DEFAULT_GUARDRAIL_MIN_REQUESTS, DEFAULT_GUARDRAIL_WINDOW_MS, Guardrail};
pub use scorer::{
    DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_PENDING_BATCHES, DEFAULT_POLL_INTERVAL_MS,
    DEFAULT_TIMEOUT_MS, ScorerLink,
};
pub use shadow::{
    DEFAULT_SHADOW_BODY_BYTES, DEFAULT_SHADOW_IN_FLIGHT, DEFAULT_SHADOW_TIMEOUT_MS, MAX_SHADOWS,
    Prediction, Shadow,
};
pub use telemetry::{DEFAULT_SAMPLE_BODY_BYTES, DEFAULT_SAMPLES_PER_BATCH, SampleRule};

use crate::assignment::{Split, salt_seed};
use crate::override_token::OverrideRule;
use crate::sticky_key::StickyKey;
use fields::{check_header_value, check_token, header_name};
use guardrail::RawGuardrail;
use override_rule::RawOverride;
use scorer::RawScorer;
use shadow::RawShadow;
use telemetry::RawTelemetry;

pub const DEFAULT_ROUTING_HEADER: &str = "x-outrider-variant";
pub const DEFAULT_STICKY_HEADER: &str = "x-user-id";

const MAX_SALT_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rollout: String,
    variants: Vec<RawVariant>,
    #[serde(default)]
    sticky_key: Option<RawStickyKey>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    routing_header: Option<String>,
    #[serde(default)]
    response_header: Option<String>,
    #[serde(default, rename = "override")]
    override_rule: Option<RawOverride>,
    #[serde(default)]
    scorer: Option<RawScorer>,
    #[serde(default)]
    telemetry: Option<RawTelemetry>,
    #[serde(default)]
    shadows: Vec<RawShadow>,
    #[serde(default)]
    guardrail: Option<RawGuardrail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    weight: f64,
    #[serde(default)]
    header_value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStickyKey {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

/// One model variant of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    /// Share of traffic in basis points (1/100 of a percent); all variants sum to 10,000.
    pub weight_bp: u32,
    /// Value the routing header takes for this variant; Envoy's route table matches it.
    pub header_value: String,
}

/// A validated configuration: everything the request path needs, precomputed.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub name: String,
    pub variants: Vec<Variant>,
    pub split: Split,
    pub sticky_key: StickyKey,
    pub salt: String,
    /// The hash seed derived from `salt`, computed once.
    pub salt_seed: u64,
    /// Lowercase, as Envoy stores header names.
    pub routing_header: String,
    pub response_header: Option<String>,
    pub override_rule: Option<OverrideRule>,
    /// Where the rollout state comes from and telemetry goes; without it the
    /// configured weights are final.
    pub scorer: Option<ScorerLink>,
    pub telemetry: Option<SampleRule>,
    /// Variants that get copies of requests, for comparison only.
    pub shadows: Vec<Shadow>,
    /// Limits that take a failing variant to 0% on this Envoy at once.
    pub guardrail: Option<Guardrail>,
}

impl Rollout {
    /// Parses and validates a configuration document. `env` resolves the environment
    /// variables named in `override.secrets_env` (the VM's environment in Envoy).
    pub fn from_json(
        document: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = json::from_slice(document)?;
        validate(raw, &env)
    }

    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }
}

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Rollout, ConfigError> {
    check_name("rollout", &raw.rollout)?;

    if raw.variants.is_empty() {
        return Err(ConfigError::new(
            "variants",
            "at least one variant is required",
        ));
    }
    if raw.variants.len() > MAX_VARIANTS {
        return Err(ConfigError::new(
            "variants",
            format!(
                "at most {MAX_VARIANTS} variants are allowed, got {}",
                raw.variants.len()
            ),
        ));
    }
    let mut variants: Vec<Variant> = Vec::with_capacity(raw.variants.len());
    for (i, v) in raw.variants.into_iter().enumerate() {
        check_name(&format!("variants[{i}].name"), &v.name)?;
        if let Some(other) = variants.iter().position(|w| w.name == v.name) {
            return Err(ConfigError::new(
                format!("variants[{i}].name"),
                format!("duplicate variant `{}` (also variants[{other}])", v.name),
            ));
        }
        let weight_bp = weight_to_basis_points(&format!("variants[{i}].weight"), v.weight)?;
        let header_value = match v.header_value {
            Some(value) => {
                check_header_value(&format!("variants[{i}].header_value"), &value)?;
                value
            }
            None => v.name.clone(),
        };
        if let Some(other) = variants.iter().position(|w| w.header_value == header_value) {
            return Err(ConfigError::new(
                format!("variants[{i}].header_value"),
                format!("`{header_value}` is already the routing value of variants[{other}]"),
            ));
        }
        variants.push(Variant {
            name: v.name,
            weight_bp,
            header_value,
        });
    }
    rules::check_total("variants", variants.iter().map(|v| v.weight_bp).sum())?;
    let split = Split::from_basis_points(variants.iter().map(|v| v.weight_bp));

    let sticky_key = match raw.sticky_key {
        None => StickyKey::Header(DEFAULT_STICKY_HEADER.to_owned()),
        Some(RawStickyKey {
            header: Some(header),
            cookie: None,
        }) => StickyKey::Header(header_name("sticky_key.header", &header)?),
        Some(RawStickyKey {
            header: None,
            cookie: Some(cookie),
        }) => {
            check_token("sticky_key.cookie", &cookie)?;
            StickyKey::Cookie(cookie)
        }
        Some(_) => {
            return Err(ConfigError::new(
                "sticky_key",
                "give exactly one of `header` or `cookie`",
            ));
        }
    };

    let salt = raw.salt.unwrap_or_else(|| raw.rollout.clone());
    if salt.is_empty() || salt.len() > MAX_SALT_LEN {
        return Err(ConfigError::new(
            "salt",
            format!("must be 1 to {MAX_SALT_LEN} bytes long"),
        ));
    }

    let routing_header = header_name(
        "routing_header",
        raw.routing_header
            .as_deref()
            .unwrap_or(DEFAULT_ROUTING_HEADER),
    )?;
    if let StickyKey::Header(sticky) = &sticky_key
        && *sticky == routing_header
    {
        return Err(ConfigError::new(
            "routing_header",
            "must differ from the sticky key header",
        ));
    }
    let response_header = raw
        .response_header
        .map(|h| header_name("response_header", &h))
        .transpose()?;

    let override_rule = raw
        .override_rule
        .map(|o| override_rule::validate(o, &routing_header, &sticky_key, env))
        .transpose()?;
    let scorer = raw.scorer.map(|s| scorer::validate(s, env)).transpose()?;
    let telemetry = raw.telemetry.map(telemetry::validate).transpose()?;
    if telemetry.is_some() && scorer.is_none() {
        return Err(ConfigError::new(
            "telemetry",
            "samples go to the scorer: configure `scorer` too",
        ));
    }
    let variant_names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let seed = salt_seed(&salt);
    let shadows = shadow::validate(raw.shadows, &variant_names, seed)?;
    let guardrail = raw
        .guardrail
        .map(|g| guardrail::validate(g, &variant_names))
        .transpose()?;

    Ok(Rollout {
        name: raw.rollout,
        variants,
        split,
        sticky_key,
        salt_seed: seed,
        salt,
        routing_header,
        response_header,
        override_rule,
        scorer,
        telemetry,
        shadows,
        guardrail,
    })
}

/// Configurations the unit tests of several modules build on.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ConfigError, Rollout};

    /// One shadow variant mirroring a quarter of the users, by sticky key.
    pub const ONE_SHADOW: &str = r#"[{"name": "v3", "cluster": "model-v3", "share": 25, "by_key": true,
        "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}]"#;

    /// A one-variant rollout with these shadows (JSON).
    pub fn with_shadows(shadows: &str) -> Result<Rollout, ConfigError> {
        Rollout::from_json(
            format!(r#"{{"rollout": "fraud", "variants": [{{"name": "stable", "weight": 100}}], "shadows": {shadows}}}"#).as_bytes(),
            |_| None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(json: &str) -> Result<Rollout, ConfigError> {
        Rollout::from_json(json.as_bytes(), no_env)
    }

    fn refused(json: &str) -> ConfigError {
        match parse(json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(err) => err,
        }
    }

    const MINIMAL: &str = r#"{"rollout": "fraud", "variants": [
        {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}"#;

    #[test]
    fn minimal_document_gets_the_defaults() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.name, "fraud");
        assert_eq!(r.salt, "fraud");
        assert_eq!(r.routing_header, "x-outrider-variant");
        assert_eq!(r.sticky_key, StickyKey::Header("x-user-id".into()));
        assert_eq!(r.response_header, None);
        assert!(r.override_rule.is_none());
        assert_eq!(r.variants[0].weight_bp, 9000);
        assert_eq!(r.variants[1].header_value, "canary");
    }

    #[test]
    fn full_document() {
        let r = Rollout::from_json(
            br#"{"rollout": "fraud", "salt": "s1",
                "variants": [{"name": "stable", "weight": 99.5, "header_value": "v1"},
                             {"name": "canary", "weight": 0.5, "header_value": "v2"}],
                "sticky_key": {"cookie": "uid"},
                "routing_header": "X-Model-Variant",
                "response_header": "x-served-by",
                "override": {"secrets": ["0123456789abcdef"], "secrets_env": ["OVR"],
                             "max_ttl_seconds": 600}}"#,
            |name| (name == "OVR").then(|| "fedcba9876543210fedc".to_owned()),
        )
        .unwrap();
        assert_eq!(r.routing_header, "x-model-variant");
        assert_eq!(r.sticky_key, StickyKey::Cookie("uid".into()));
        assert_eq!(r.variants[0].weight_bp, 9950);
        assert_eq!(r.variants[1].weight_bp, 50);
        let o = r.override_rule.unwrap();
        assert_eq!(o.header, "x-outrider-override");
        assert_eq!(o.secrets.len(), 2);
        assert_eq!(o.max_ttl_seconds, 600);
    }

    #[test]
    fn refusals_name_the_field_and_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "extra": 1}"#,
                "extra",
                "unknown field `extra`",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "wieght": 100}]}"#,
                "variants[0].wieght",
                "unknown field `wieght`",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": "100"}]}"#,
                "variants[0].weight",
                "invalid type",
            ),
            (
                r#"{"variants": [{"name": "a", "weight": 100}]}"#,
                "rollout",
                "missing field `rollout`",
            ),
            (
                r#"{"rollout": "", "variants": [{"name": "a", "weight": 100}]}"#,
                "rollout",
                "must not be empty",
            ),
            (
                r#"{"rollout": "a.b", "variants": [{"name": "a", "weight": 100}]}"#,
                "rollout",
                "'.'",
            ),
            (
                r#"{"rollout": "r", "variants": []}"#,
                "variants",
                "at least one variant",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 30}]}"#,
                "variants",
                "add up to 90",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]}"#,
                "variants[1].name",
                "duplicate variant `a`",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 50, "header_value": "x"}, {"name": "b", "weight": 50, "header_value": "x"}]}"#,
                "variants[1].header_value",
                "already the routing value",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 120}, {"name": "b", "weight": -20}]}"#,
                "variants[0].weight",
                "between 0 and 100",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 99.995}, {"name": "b", "weight": 0.005}]}"#,
                "variants[0].weight",
                "two decimal places",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "", "weight": 100}]}"#,
                "variants[0].name",
                "must not be empty",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100, "header_value": "has space"}]}"#,
                "variants[0].header_value",
                "' '",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "sticky_key": {}}"#,
                "sticky_key",
                "exactly one",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "sticky_key": {"header": "a", "cookie": "b"}}"#,
                "sticky_key",
                "exactly one",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "sticky_key": {"header": "bad header"}}"#,
                "sticky_key.header",
                "not a valid name",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "routing_header": "x-user-id"}"#,
                "routing_header",
                "differ from the sticky key",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "routing_header": "Host"}"#,
                "routing_header",
                "managed by Envoy",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "salt": ""}"#,
                "salt",
                "1 to 256 bytes",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "override": {}}"#,
                "override",
                "at least one secret",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "override": {"secrets": ["short"]}}"#,
                "override.secrets[0]",
                "at least 16 bytes",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "override": {"secrets_env": ["NOPE"]}}"#,
                "override.secrets_env[0]",
                "`NOPE` is not set",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "override": {"secrets": ["0123456789abcdef"], "max_ttl_seconds": 0}}"#,
                "override.max_ttl_seconds",
                "between 1 and",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "override": {"secrets": ["0123456789abcdef"], "header": "x-outrider-variant"}}"#,
                "override.header",
                "must differ",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}]} {}"#,
                "",
                "trailing data",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {}}"#,
                "guardrail",
                "at least one limit",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_5xx_share": 1}}"#,
                "guardrail.max_5xx_share",
                "below 1, got 1",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_grpc_error_share": -0.1}}"#,
                "guardrail.max_grpc_error_share",
                "at least 0",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_p99_ms": 0}}"#,
                "guardrail.max_p99_ms",
                "between 1 and 600000",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_p99_ms": 100, "window_ms": 500}}"#,
                "guardrail.window_ms",
                "between 1000 and 600000, got 500",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_p99_ms": 100, "min_requests": 0}}"#,
                "guardrail.min_requests",
                "between 1 and",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_5xx_share": 0.5, "variants": ["b", "c"]}}"#,
                "guardrail.variants[1]",
                "no variant `c`",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_5xx_share": 0.5, "variants": ["a"]}}"#,
                "guardrail.variants[0]",
                "`a` is the baseline",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_5xx_share": 0.5, "variants": ["b", "b"]}}"#,
                "guardrail.variants[1]",
                "listed twice",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}], "guardrail": {"max_5xx_share": 0.5}}"#,
                "guardrail.variants",
                "guards no variant",
            ),
            (
                r#"{"rollout": "r", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "guardrail": {"max_5xx_share": 0.5, "max_5xx": 1}}"#,
                "guardrail.max_5xx",
                "unknown field",
            ),
            (r#"not json"#, "", "expected"),
            (r#""#, "", "EOF"),
        ];
        for (json, field, problem) in cases {
            let err = refused(json);
            assert_eq!(err.field, *field, "field for {json}: {err}");
            assert!(
                err.problem.contains(problem),
                "problem for {json}: `{}` lacks `{problem}`",
                err.problem
            );
            assert!(err.to_string().starts_with("invalid configuration"));
        }
    }

    #[test]
    fn a_guardrail_guards_every_variant_but_the_baseline_by_default() {
        let three = r#"{"rollout": "r", "variants": [{"name": "a", "weight": 80},
            {"name": "b", "weight": 10}, {"name": "c", "weight": 10}]"#;
        let g = parse(&format!(
            r#"{three}, "guardrail": {{"max_5xx_share": 0.5}}}}"#
        ))
        .unwrap()
        .guardrail
        .unwrap();
        assert_eq!(
            g,
            Guardrail {
                window_ms: 10_000,
                min_requests: 20,
                max_5xx_share: Some(0.5),
                max_grpc_error_share: None,
                max_p99_ms: None,
                variants: vec![1, 2],
            }
        );
        let g = parse(&format!(
            r#"{three}, "guardrail": {{"window_ms": 5000, "min_requests": 50,
                "max_grpc_error_share": 0, "max_p99_ms": 2000, "variants": ["c"]}}}}"#
        ))
        .unwrap()
        .guardrail
        .unwrap();
        assert_eq!(
            (
                g.window_ms,
                g.min_requests,
                g.max_grpc_error_share,
                g.max_p99_ms,
                g.variants
            ),
            (5_000, 50, Some(0.0), Some(2_000), vec![2])
        );
        assert!(parse(MINIMAL).unwrap().guardrail.is_none());
    }

    #[test]
    fn too_many_variants() {
        let variants: Vec<String> = (0..17)
            .map(|i| {
                format!(
                    r#"{{"name": "v{i}", "weight": {}}}"#,
                    if i == 0 { 100 } else { 0 }
                )
            })
            .collect();
        let err = refused(&format!(
            r#"{{"rollout": "r", "variants": [{}]}}"#,
            variants.join(",")
        ));
        assert_eq!(err.field, "variants");
        assert!(err.problem.contains("at most 16"));
    }

    #[test]
    fn zero_weight_variants_are_allowed() {
        let r = parse(r#"{"rollout": "r", "variants": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}]}"#)
            .unwrap();
        assert_eq!(r.variants[1].weight_bp, 0);
    }
}
