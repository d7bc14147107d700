//! Which model versions the monitor watches: every version a rollout variant names
//! (`"model": "models:/fraud/3"`, checked when the rollout is created), on the samples
//! of the variants that name it.

use std::collections::BTreeMap;

use outrider_model::registry::{ModelUri, Selector};

use crate::rollout::Rollout;

/// A variant of a rollout: where a version's samples come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub rollout: String,
    pub variant: String,
}

/// Each (model, version) that variants name, with the variants, in name order.
pub fn versions(rollouts: &[Rollout]) -> BTreeMap<(String, u64), Vec<Source>> {
    let mut out: BTreeMap<(String, u64), Vec<Source>> = BTreeMap::new();
    for r in rollouts {
        for v in &r.variants {
            let Some(Ok(ModelUri::Registered {
                name,
                selector: Selector::Version(version),
            })) = v.model.as_deref().map(str::parse::<ModelUri>)
            else {
                continue;
            };
            out.entry((name, version)).or_default().push(Source {
                rollout: r.name.clone(),
                variant: v.name.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Attribution, CreateRequest};

    #[test]
    fn each_named_version_with_its_variants() {
        let rollout = |name: &str, models: [&str; 2]| {
            let req: CreateRequest = serde_json::from_value(serde_json::json!({
                "name": name,
                "variants": [{"name": "stable", "weight": 90, "model": models[0]},
                             {"name": "canary", "weight": 10, "model": models[1]}]
            }))
            .unwrap();
            Rollout::create(req, &Attribution::default(), 1).unwrap().0
        };
        let watched = versions(&[
            rollout("a", ["models:/fraud/1", "models:/fraud/2"]),
            rollout("b", ["models:/fraud/2", "models:/other/7"]),
        ]);
        let keys: Vec<(&str, u64, usize)> = watched
            .iter()
            .map(|((m, v), s)| (m.as_str(), *v, s.len()))
            .collect();
        assert_eq!(keys, [("fraud", 1, 1), ("fraud", 2, 2), ("other", 7, 1)]);
        assert_eq!(
            watched[&("fraud".to_owned(), 2)][1],
            Source {
                rollout: "b".into(),
                variant: "stable".into()
            }
        );
    }
}
