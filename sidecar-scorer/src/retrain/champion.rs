//! A promoted variant that names a model version makes that version the registry's
//! `champion` (the `challenger` alias leaves it), so model servers that follow
//! `models:/NAME@champion` swap to it and the next retraining judges against it.

use outrider_model::registry::{self, AnyRegistry};

use crate::api::AppState;
use crate::metrics::RegistryLabels;
use crate::rollout::{Event, Rollout};

/// `models:/NAME/VERSION` as (NAME, VERSION).
pub fn model_version(uri: &str) -> Option<(&str, u64)> {
    let (name, version) = uri.strip_prefix("models:/")?.split_once('/')?;
    Some((name, version.parse().ok()?))
}

/// After a stored change: a promotion moves the champion alias.
pub async fn on_change(app: &AppState, next: &Rollout, event: &Event) {
    if event.kind != "promoted" {
        return;
    }
    let Some(location) = &app.config.registry else {
        return;
    };
    let Some((name, version)) = next
        .variants
        .iter()
        .find(|v| v.weight >= 100.0)
        .and_then(|v| v.model.as_deref())
        .and_then(model_version)
    else {
        return;
    };
    let result = match AnyRegistry::open(location) {
        Ok(r) => registry::promote(&r, name, version)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let label = |result: &str| RegistryLabels {
        model: name.to_owned(),
        result: result.to_owned(),
    };
    match result {
        Ok(()) => {
            app.metrics
                .registry_promotions
                .get_or_create(&label("ok"))
                .inc();
            tracing::info!(rollout = %next.name, model = name, version, "registry: v{version} is the champion");
        }
        Err(e) => {
            app.metrics
                .registry_promotions
                .get_or_create(&label("failed"))
                .inc();
            tracing::warn!(rollout = %next.name, model = name, version, error = %e, "registry: could not make the promoted version the champion");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_versions_parse() {
        assert_eq!(model_version("models:/fraud/12"), Some(("fraud", 12)));
        assert_eq!(model_version("models:/fraud@champion"), None);
        assert_eq!(model_version("fraud/1"), None);
    }
}
