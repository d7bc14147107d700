//! `override`: which header carries override tokens, and the secrets that sign them.

use serde::Deserialize;

use super::ConfigError;
use super::fields::header_name;
use crate::override_token::OverrideRule;
use crate::sticky_key::StickyKey;

pub const DEFAULT_OVERRIDE_HEADER: &str = "x-outrider-override";
pub const DEFAULT_OVERRIDE_MAX_TTL_SECONDS: u64 = 86_400;
const MAX_TTL_LIMIT_SECONDS: u64 = 366 * 86_400;
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverride {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    secrets_env: Vec<String>,
    #[serde(default)]
    max_ttl_seconds: Option<u64>,
}

pub(super) fn validate(
    raw: RawOverride,
    routing_header: &str,
    sticky_key: &StickyKey,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OverrideRule, ConfigError> {
    let header = header_name(
        "override.header",
        raw.header.as_deref().unwrap_or(DEFAULT_OVERRIDE_HEADER),
    )?;
    let clashes_with_sticky = matches!(sticky_key, StickyKey::Header(h) if *h == header);
    if header == routing_header || clashes_with_sticky {
        return Err(ConfigError::new(
            "override.header",
            "must differ from the routing header and the sticky key header",
        ));
    }
    let mut secrets = Vec::new();
    for (i, secret) in raw.secrets.into_iter().enumerate() {
        check_secret(&format!("override.secrets[{i}]"), &secret)?;
        secrets.push(secret.into_bytes());
    }
    for (i, name) in raw.secrets_env.iter().enumerate() {
        let field = format!("override.secrets_env[{i}]");
        let secret = env(name).ok_or_else(|| {
            ConfigError::new(
                &field,
                format!("environment variable `{name}` is not set in the VM"),
            )
        })?;
        check_secret(&field, &secret)?;
        secrets.push(secret.into_bytes());
    }
    if secrets.is_empty() {
        return Err(ConfigError::new(
            "override",
            "an override needs at least one secret (`secrets` or `secrets_env`)",
        ));
    }
    let max_ttl_seconds = raw
        .max_ttl_seconds
        .unwrap_or(DEFAULT_OVERRIDE_MAX_TTL_SECONDS);
    if max_ttl_seconds == 0 || max_ttl_seconds > MAX_TTL_LIMIT_SECONDS {
        return Err(ConfigError::new(
            "override.max_ttl_seconds",
            format!("must be between 1 and {MAX_TTL_LIMIT_SECONDS}, got {max_ttl_seconds}"),
        ));
    }
    Ok(OverrideRule {
        header,
        secrets,
        max_ttl_seconds,
    })
}

fn check_secret(field: &str, secret: &str) -> Result<(), ConfigError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            field,
            format!("a secret must be at least {MIN_SECRET_LEN} bytes long"),
        ));
    }
    Ok(())
}
