//! Which model versions the monitor watches: every version a rollout variant names
//! (`"model": "models:/fraud/3"`), on the samples of the variants that name it.

use std::collections::BTreeMap;

use outrider_model::registry::{ModelUri, Selector};

use crate::rollout::Rollout;

/// A variant of a rollout: where a version's samples come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Source {
    pub rollout: String,
    pub variant: String,
}

/// The registered model URIs that variants name, each with its variants; a name that
/// is not a registered model URI is reported with why.
pub fn by_uri(
    rollouts: &[Rollout],
) -> BTreeMap<String, Result<(String, Selector, Vec<Source>), String>> {
    let mut out: BTreeMap<String, Result<(String, Selector, Vec<Source>), String>> =
        BTreeMap::new();
    for r in rollouts {
        for v in &r.variants {
            let Some(uri) = &v.model else { continue };
            let entry = out.entry(uri.clone()).or_insert_with(|| match uri.parse::<ModelUri>() {
                Ok(ModelUri::Registered { name, selector }) => Ok((name, selector, Vec::new())),
                Ok(ModelUri::File(_)) => Err(format!(
                    "`{uri}` is a file; the monitor watches registered versions (models:/NAME/VERSION)"
                )),
                Err(e) => Err(e.to_string()),
            });
            if let Ok((_, _, sources)) = entry {
                sources.push(Source {
                    rollout: r.name.clone(),
                    variant: v.name.clone(),
                });
            }
        }
    }
    out
}
