//! The exported fraud model: the feature subgraph, then a logistic head
//! (`sigmoid(features · w + b)`), as one ONNX graph from raw transaction
//! columns to the probability of fraud.

use tract_onnx::pb::ModelProto;

use super::features;
use crate::data::schema::{FEATURES, INPUT, N_FEATURES, OUTPUT, all_merchant_categories};
use crate::onnx::builder::{Dim, GraphBuilder};
use crate::serve::rows::{METADATA_CATEGORIES, METADATA_FEATURES, METADATA_SCORE};

/// Builds the scoring model from weights on the raw (unstandardised)
/// engineered features.
pub fn scoring_model(weights: &[f32], intercept: f32, description: &str) -> ModelProto {
    let mut g = GraphBuilder::default();
    let input = g.input_f32(INPUT, &[Dim::Named("N"), Dim::Fixed(N_FEATURES as i64)]);
    let z = features::add(&mut g, &input);
    let w = g.const_f32("weights", &[weights.len() as i64, 1], weights.to_vec());
    let b = g.const_f32("intercept", &[1], vec![intercept]);
    let logit = g.node("MatMul", &[&z, &w], vec![]);
    let logit = g.node("Add", &[&logit, &b], vec![]);
    let score = g.node("Sigmoid", &[&logit], vec![]);
    g.output_as(&score, OUTPUT);
    let categories = serde_json::json!({ "merchant_category": all_merchant_categories() });
    g.finish(
        "fraud",
        &[(OUTPUT, &[Dim::Named("N"), Dim::Fixed(1)])],
        &[
            (METADATA_FEATURES, serde_json::json!(FEATURES).to_string()),
            (METADATA_CATEGORIES, categories.to_string()),
            (
                METADATA_SCORE,
                serde_json::json!({"output": OUTPUT, "column": 0}).to_string(),
            ),
        ],
        description,
    )
}
