//! Rules the filter's configuration and the scorer's API both enforce: how rollouts
//! and variants may be named, how weights are written, and how many variants there
//! may be. Both sides check with these functions, so a rollout the scorer accepts is
//! one every filter can route.

use std::fmt;

/// More variants than this is a misconfiguration, and the bound keeps the number of
/// stats each worker defines small.
pub const MAX_VARIANTS: usize = 16;

/// The longest rollout, variant or feature name.
pub const MAX_NAME_LEN: usize = 63;

/// Weights are kept in basis points (1/100 of a percent); a full split is this many.
pub const FULL_WEIGHT_BP: u32 = 10_000;

/// A value that breaks a rule: the path of its field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `variants[1].weight`; empty for the document itself.
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "field `{}`: {}", self.field, self.problem)
        }
    }
}

impl std::error::Error for FieldError {}

/// Names end up in stat names and Prometheus labels, so they keep to a safe alphabet
/// (no `.` or `=`, which the stats tag regexes use as separators).
pub fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "must be at most {MAX_NAME_LEN} characters, got {}",
                name.len()
            ),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(FieldError::new(
            field,
            format!("`{name}` has the character {c:?}; use letters, digits, `-` and `_`"),
        ));
    }
    Ok(())
}

/// A weight in percent (0 to 100, at most two decimal places) as basis points.
pub fn weight_to_basis_points(field: &str, weight: f64) -> Result<u32, FieldError> {
    if !weight.is_finite() || !(0.0..=100.0).contains(&weight) {
        return Err(FieldError::new(
            field,
            format!("must be a percentage between 0 and 100, got {weight}"),
        ));
    }
    let scaled = weight * 100.0;
    let rounded = scaled.round();
    if (scaled - rounded).abs() > 1e-6 {
        return Err(FieldError::new(
            field,
            format!("at most two decimal places are allowed, got {weight}"),
        ));
    }
    // In range by the check above: 0 <= rounded <= 10_000.
    Ok(rounded as u32)
}

/// Basis points as a percentage (`1000` is `10`, `1050` is `10.50`).
pub fn format_percent(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}", bp / 100)
    } else {
        format!("{}.{:02}", bp / 100, bp % 100)
    }
}

/// The refusal of weights that do not make a full split, or `None` if they do.
pub fn check_total(field: &str, total_bp: u32) -> Result<(), FieldError> {
    if total_bp == FULL_WEIGHT_BP {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!(
            "weights must add up to 100, they add up to {}",
            format_percent(total_bp)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("n", "fraud-v2_canary").is_ok());
        assert_eq!(
            check_name("n", "").unwrap_err().problem,
            "must not be empty"
        );
        assert!(check_name("n", "a.b").unwrap_err().problem.contains("'.'"));
        assert!(check_name("n", "a=b").unwrap_err().problem.contains("'='"));
        assert!(
            check_name("n", &"x".repeat(64))
                .unwrap_err()
                .problem
                .contains("at most 63")
        );
        assert!(check_name("n", &"x".repeat(63)).is_ok());
    }

    #[test]
    fn weights() {
        assert_eq!(weight_to_basis_points("w", 10.0), Ok(1000));
        assert_eq!(weight_to_basis_points("w", 0.25), Ok(25));
        assert_eq!(weight_to_basis_points("w", 100.0), Ok(10_000));
        for bad in [-0.01, 100.01, f64::NAN, f64::INFINITY] {
            assert!(weight_to_basis_points("w", bad).is_err(), "{bad}");
        }
        assert!(
            weight_to_basis_points("w", 0.125)
                .unwrap_err()
                .problem
                .contains("two decimal")
        );
        assert_eq!(format_percent(1000), "10");
        assert_eq!(format_percent(1050), "10.50");
        assert_eq!(format_percent(5), "0.05");
        assert!(check_total("v", 10_000).is_ok());
        assert_eq!(
            check_total("v", 11_000).unwrap_err().problem,
            "weights must add up to 100, they add up to 110"
        );
    }
}
