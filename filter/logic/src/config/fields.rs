//! Checks of single values that several sections of the configuration share: names,
//! header names and values, secrets, JSON pointers, ranges.

use outrider_protocol::rules;

use super::ConfigError;

/// The naming rule rollouts, variants, shadows and features share with the scorer.
pub fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    rules::check_name(field, name).map_err(ConfigError::from)
}

/// A weight in percent (0 to 100, at most two decimal places) as basis points.
pub fn weight_to_basis_points(field: &str, weight: f64) -> Result<u32, ConfigError> {
    rules::weight_to_basis_points(field, weight).map_err(ConfigError::from)
}

/// RFC 9110 token characters: what header and cookie names are made of.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

pub(super) fn check_token(field: &str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if let Some(c) = token.chars().find(|c| !is_tchar(*c)) {
        return Err(ConfigError::new(
            field,
            format!("`{token}` is not a valid name: it has the character {c:?}"),
        ));
    }
    Ok(())
}

/// Header names are case-insensitive; Envoy stores them in lowercase.
pub(super) fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    check_token(field, name)?;
    let lower = name.to_ascii_lowercase();
    if lower == "host" || lower == "content-length" || lower == "transfer-encoding" {
        return Err(ConfigError::new(
            field,
            format!("`{lower}` is managed by Envoy and cannot be used"),
        ));
    }
    Ok(lower)
}

pub(super) fn check_header_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            field,
            format!("`{value}` has the character {c:?}; use visible ASCII without spaces"),
        ));
    }
    Ok(())
}

/// A JSON pointer into a request or response body (RFC 6901).
pub(super) fn pointer(field: &str, p: &str) -> Result<String, ConfigError> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(ConfigError::new(
            field,
            format!("`{p}` is not a JSON pointer (it starts with `/`, as in `/outputs/0/data/0`)"),
        ));
    }
    Ok(p.to_owned())
}

/// `value`, or `default` when absent, if it lies in `min..=max`.
pub(super) fn within<T>(
    field: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
    Ok(v)
}
