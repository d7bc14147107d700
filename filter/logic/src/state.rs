//! Applying the rollout state the scorer serves: new weights for the configured
//! variants. A state is refused whole (and the current weights kept) if it names a
//! variant the configuration does not route, or its weights do not add up.

use outrider_protocol::RolloutState;

use crate::assignment::Split;
use crate::config::{ConfigError, Rollout, weight_to_basis_points};

impl Rollout {
    /// This rollout with the state's weights; variants the state leaves out get 0.
    pub fn with_state(&self, state: &RolloutState) -> Result<Rollout, ConfigError> {
        if state.rollout != self.name {
            return Err(ConfigError::new(
                "rollout",
                format!("the state is for `{}`, not `{}`", state.rollout, self.name),
            ));
        }
        let mut weights = vec![0u32; self.variants.len()];
        for (i, w) in state.weights.iter().enumerate() {
            let field = format!("weights[{i}]");
            let slot = self
                .variant_index(&w.variant)
                .and_then(|index| weights.get_mut(index))
                .ok_or_else(|| {
                    ConfigError::new(
                        &field,
                        format!("variant `{}` is not configured in this filter", w.variant),
                    )
                })?;
            *slot = weight_to_basis_points(&format!("{field}.weight"), w.weight)?;
        }
        let total: u32 = weights.iter().sum();
        if total != 10_000 {
            return Err(ConfigError::new(
                "weights",
                format!("add up to {total} basis points, not 10000"),
            ));
        }
        let mut next = self.clone();
        for (variant, bp) in next.variants.iter_mut().zip(&weights) {
            variant.weight_bp = *bp;
        }
        next.split = Split::from_basis_points(weights);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use outrider_protocol::VariantWeight;

    use super::*;

    fn rollout() -> Rollout {
        Rollout::from_json(
            br#"{"rollout": "fraud", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}"#,
            |_| None,
        )
        .unwrap()
    }

    fn state(weights: &[(&str, f64)]) -> RolloutState {
        RolloutState {
            rollout: "fraud".into(),
            version: 7,
            status: "active".into(),
            weights: weights
                .iter()
                .map(|(v, w)| VariantWeight {
                    variant: (*v).into(),
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn new_weights_move_the_split() {
        let next = rollout()
            .with_state(&state(&[("stable", 70.0), ("canary", 30.0)]))
            .unwrap();
        assert_eq!(next.variants[1].weight_bp, 3000);
        assert_eq!(next.split.variant_at(0.69), 0);
        assert_eq!(next.split.variant_at(0.71), 1);
        let all_stable = rollout().with_state(&state(&[("stable", 100.0)])).unwrap();
        assert_eq!(all_stable.variants[1].weight_bp, 0);
    }

    #[test]
    fn bad_states_are_refused_whole() {
        let r = rollout();
        assert!(
            r.with_state(&state(&[("stable", 50.0), ("shadow", 50.0)]))
                .unwrap_err()
                .problem
                .contains("`shadow` is not configured")
        );
        assert!(
            r.with_state(&state(&[("stable", 50.0), ("canary", 40.0)]))
                .unwrap_err()
                .problem
                .contains("9000")
        );
        assert!(
            r.with_state(&state(&[("stable", 100.5), ("canary", -0.5)]))
                .is_err()
        );
        let mut other = state(&[("stable", 100.0)]);
        other.rollout = "payments".into();
        assert!(r.with_state(&other).is_err());
    }
}
