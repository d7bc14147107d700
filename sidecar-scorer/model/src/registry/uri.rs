//! Model URIs: `models:/<name>@<alias>`, `models:/<name>/<version>`,
//! `models:/<name>/latest` (as MLflow spells them), or a path to an `.onnx`
//! file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Which version of a registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Alias(String),
    Version(u64),
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    Registered { name: String, selector: Selector },
    File(PathBuf),
}

/// Registered model names: letters, digits, `_`, `-` and `.`, up to 128.
pub fn validate_model_name(name: &str) -> Result<()> {
    validate_word("model name", name)
}

/// Aliases: letters, digits, `_` and `-`, not only digits (MLflow's rule:
/// `models:/m/3` is a version) and not `latest`.
pub fn validate_alias(alias: &str) -> Result<()> {
    validate_word("alias", alias)?;
    if alias.contains('.') || alias.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::invalid(
            "alias",
            format!("`{alias}` must not be a number or contain `.`"),
        ));
    }
    if alias.eq_ignore_ascii_case("latest") {
        return Err(Error::invalid("alias", "`latest` is reserved"));
    }
    Ok(())
}

fn validate_word(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!("`{s}` must be 1 to 128 letters, digits, `_`, `-` or `.`"),
        ))
    }
}

impl FromStr for ModelUri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let Some(rest) = s.strip_prefix("models:/") else {
            if s.contains(":/") && !s.starts_with("file:") {
                return Err(Error::invalid(
                    "model",
                    format!(
                        "`{s}`: expected models:/<name>@<alias>, models:/<name>/<version> or a path"
                    ),
                ));
            }
            let path = s
                .strip_prefix("file://")
                .or_else(|| s.strip_prefix("file:"))
                .unwrap_or(s);
            return Ok(Self::File(PathBuf::from(path)));
        };
        let bad = |why: &str| Error::invalid("model", format!("`{s}`: {why}"));
        let (name, selector) = if let Some((name, alias)) = rest.split_once('@') {
            validate_alias(alias).map_err(|e| bad(&e.to_string()))?;
            (name, Selector::Alias(alias.to_owned()))
        } else if let Some((name, version)) = rest.split_once('/') {
            let selector = if version == "latest" {
                Selector::Latest
            } else {
                version
                    .parse()
                    .ok()
                    .filter(|&v| v > 0)
                    .map(Selector::Version)
                    .ok_or_else(|| bad("the version must be a positive number or `latest`"))?
            };
            (name, selector)
        } else {
            return Err(bad(
                "name a version (`/3`, `/latest`) or an alias (`@champion`)",
            ));
        };
        validate_model_name(name).map_err(|e| bad(&e.to_string()))?;
        Ok(Self::Registered {
            name: name.to_owned(),
            selector,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias(a) => write!(f, "@{a}"),
            Self::Version(v) => write!(f, "/{v}"),
            Self::Latest => f.write_str("/latest"),
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered { name, selector } => write!(f, "models:/{name}{selector}"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "models:/fraud@champion".parse::<ModelUri>().unwrap(),
            ModelUri::Registered {
                name: "fraud".into(),
                selector: Selector::Alias("champion".into())
            }
        );
        assert_eq!(
            "models:/fraud/3".parse::<ModelUri>().unwrap(),
            ModelUri::Registered {
                name: "fraud".into(),
                selector: Selector::Version(3)
            }
        );
        assert_eq!(
            "models:/fraud/latest"
                .parse::<ModelUri>()
                .unwrap()
                .to_string(),
            "models:/fraud/latest"
        );
        assert_eq!(
            "model.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("model.onnx".into())
        );
        assert_eq!(
            "file:///tmp/m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("/tmp/m.onnx".into())
        );
    }

    #[test]
    fn bad_uris_say_why() {
        for (uri, why) in [
            ("models:/fraud", "name a version"),
            ("models:/fraud/0", "positive number"),
            ("models:/fraud@", "alias"),
            ("models:/fr aud@champion", "model name"),
            ("models:/fraud@3", "must not be a number"),
            ("s3://bucket/model.onnx", "expected models:/"),
        ] {
            let err = uri.parse::<ModelUri>().unwrap_err().to_string();
            assert!(err.contains(why), "{uri}: {err}");
        }
    }
}
