//! Training: a time-ordered split, features from the ONNX feature graph,
//! L2-regularised logistic regression (linfa), evaluation of the exported
//! ONNX model itself, and its reference profile.

pub mod export;
pub mod features;
pub mod metrics;

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use crate::data::Transaction;
use crate::data::schema::{CATEGORICAL, FEATURES, MERCHANT_CATEGORIES, N_FEATURES};
use crate::error::{Error, Result};
use crate::onnx::OnnxModel;
use crate::profile::{self, ModelProfile};
pub use metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Name the model is registered under.
    pub model_name: String,
    /// L2 penalty (on standardised features; the loss is a sum over rows).
    pub alpha: f64,
    pub max_iterations: u64,
    /// Share of the most recent rows held out for evaluation.
    pub test_fraction: f64,
    /// Seed of the data the model was trained on, recorded with the run.
    pub seed: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model_name: "fraud".to_owned(),
            alpha: 1.0,
            max_iterations: 200,
            test_fraction: 0.2,
            seed: None,
        }
    }
}

/// What a training run produces.
pub struct Trained {
    /// The serialised ONNX model.
    pub onnx: Vec<u8>,
    pub profile: ModelProfile,
    pub report: TrainingReport,
}

/// Parameters and metrics of a run, as logged to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub params: BTreeMap<String, String>,
    /// Metrics on the held-out (most recent) rows.
    pub test: Metrics,
    /// Metrics on the training rows.
    pub train: Metrics,
    /// Weight of each engineered feature on its standardised scale.
    pub coefficients: BTreeMap<String, f64>,
    pub train_rows: u64,
    pub test_rows: u64,
    /// Time of the first held-out row (Unix seconds).
    pub split_timestamp: i64,
}

impl TrainingReport {
    /// Metrics as flat name/value pairs (`test_roc_auc`, ...).
    pub fn metric_values(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (prefix, m) in [("test", &self.test), ("train", &self.train)] {
            out.push((format!("{prefix}_roc_auc"), m.roc_auc));
            out.push((format!("{prefix}_pr_auc"), m.pr_auc));
            out.push((format!("{prefix}_recall_at_1pct_fpr"), m.recall_at_1pct_fpr));
            out.push((
                format!("{prefix}_fraud_rate"),
                m.positives as f64 / m.rows as f64,
            ));
        }
        out.push((
            "test_threshold_at_1pct_fpr".into(),
            self.test.threshold_at_1pct_fpr,
        ));
        out
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::invalid(
                "test_fraction",
                format!(
                    "must be between 0 and 1 (exclusive), got {}",
                    self.test_fraction
                ),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::invalid(
                "alpha",
                format!("must be a non-negative number, got {}", self.alpha),
            ));
        }
        if self.max_iterations == 0 {
            return Err(Error::invalid("max_iterations", "must be at least 1"));
        }
        crate::registry::uri::validate_model_name(&self.model_name)
    }

    fn params(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::from([
            ("algorithm".to_owned(), "logistic_regression".to_owned()),
            ("alpha".to_owned(), self.alpha.to_string()),
            ("max_iterations".to_owned(), self.max_iterations.to_string()),
            ("test_fraction".to_owned(), self.test_fraction.to_string()),
            ("split".to_owned(), "time_ordered".to_owned()),
            ("features".to_owned(), features::names().len().to_string()),
        ]);
        if let Some(seed) = self.seed {
            p.insert("data_seed".to_owned(), seed.to_string());
        }
        p
    }
}

/// Input rows as a `[n, 10]` tensor.
pub fn input_tensor<'a>(rows: impl ExactSizeIterator<Item = &'a Transaction>) -> Result<Tensor> {
    let n = rows.len();
    let mut flat = Vec::with_capacity(n * N_FEATURES);
    for t in rows {
        flat.extend_from_slice(&t.features());
    }
    Tensor::from_shape(&[n, N_FEATURES], &flat).map_err(Error::model)
}

/// Scores of rows by a loaded model with a `[N, 1]` score output.
pub fn score(model: &OnnxModel, rows: &[&Transaction]) -> Result<Vec<f64>> {
    let out = model.run(vec![input_tensor(rows.iter().copied())?])?;
    let scores = crate::tensor::slice_of::<f32>(&out[0])?;
    Ok(scores.iter().map(|&s| f64::from(s)).collect())
}

/// Trains on `rows` (labelled transactions, any order).
pub fn train(rows: &[Transaction], config: &TrainConfig) -> Result<Trained> {
    config.validate()?;
    let mut ordered: Vec<&Transaction> = rows.iter().collect();
    ordered.sort_by_key(|t| (t.timestamp, t.transaction_id));
    let n_test = ((ordered.len() as f64) * config.test_fraction).round() as usize;
    let n_train = ordered.len().saturating_sub(n_test);
    let (train_rows, test_rows) = ordered.split_at(n_train);
    for (name, part) in [("training", train_rows), ("test", test_rows)] {
        let fraud = part.iter().filter(|t| t.fraud()).count();
        if fraud == 0 || fraud == part.len() {
            return Err(Error::invalid(
                "rows",
                format!(
                    "the {name} split ({} rows) needs both fraudulent and honest transactions; \
                     use more rows",
                    part.len()
                ),
            ));
        }
    }

    // The design matrix, computed by the same graph the exported model carries.
    let feature_model = OnnxModel::from_bytes(&crate::onnx::builder::encode(&features::model()))?;
    let z = feature_model.run(vec![input_tensor(train_rows.iter().copied())?])?;
    let z = z[0].to_plain_array_view::<f32>().map_err(Error::model)?;
    let d = z.shape()[1];
    let z = Array2::from_shape_fn((n_train, d), |(i, j)| f64::from(z[[i, j]]));

    // Standardise for the solver; the weights are mapped back afterwards.
    let mean = z
        .mean_axis(ndarray::Axis(0))
        .ok_or_else(|| Error::model("empty training split"))?;
    let std = z
        .std_axis(ndarray::Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    let standardised = (&z - &mean) / &std;
    let labels: Array1<bool> = train_rows.iter().map(|t| t.fraud()).collect();
    let fitted = LogisticRegression::default()
        .alpha(config.alpha)
        .max_iterations(config.max_iterations)
        .fit(&Dataset::new(standardised, labels))
        .map_err(|e| Error::model(format!("training failed: {e}")))?;
    // linfa models the probability of its majority class; fraud is the minority.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w_std: Vec<f64> = fitted.params().iter().map(|w| sign * w).collect();
    let b_std = sign * fitted.intercept();

    let weights: Vec<f32> = w_std
        .iter()
        .zip(&std)
        .map(|(w, s)| (w / s) as f32)
        .collect();
    let intercept = b_std
        - w_std
            .iter()
            .zip(&mean)
            .zip(&std)
            .map(|((w, m), s)| w * m / s)
            .sum::<f64>();
    let description = format!(
        "outrider fraud model `{}`: logistic regression on {d} engineered features of a card \
         transaction; output `score` is the probability of fraud.",
        config.model_name
    );
    let proto = export::scoring_model(&weights, intercept as f32, &description);
    let onnx = crate::onnx::builder::encode(&proto);

    // Evaluate the exported model itself, as it will be served.
    let model = OnnxModel::from_bytes(&onnx)?;
    let train_scores = score(&model, train_rows)?;
    let test_scores = score(&model, test_rows)?;
    let labels_of = |part: &[&Transaction]| part.iter().map(|t| t.fraud()).collect::<Vec<_>>();
    let metrics_of = |scores: &[f64], part: &[&Transaction]| {
        metrics::evaluate(scores, &labels_of(part))
            .ok_or_else(|| Error::model("a split lacks a class"))
    };
    let report = TrainingReport {
        params: config.params(),
        test: metrics_of(&test_scores, test_rows)?,
        train: metrics_of(&train_scores, train_rows)?,
        coefficients: features::names().into_iter().zip(w_std).collect(),
        train_rows: n_train as u64,
        test_rows: n_test as u64,
        split_timestamp: test_rows[0].timestamp,
    };
    let mut profile = build_profile(&config.model_name, train_rows, &train_scores)?;
    // Calibrated on rows the model did not learn from, at the threshold that flags
    // 1% of honest held-out transactions.
    let performance = outrider_stats::performance::Reference::fit(
        &test_scores,
        &labels_of(test_rows),
        report.test.threshold_at_1pct_fpr,
    )
    .map_err(|e| Error::invalid("performance", e.to_string()))?;
    profile.performance = Some(performance);
    Ok(Trained {
        onnx,
        profile,
        report,
    })
}

/// The reference profile of the training rows and their scores.
pub fn build_profile(model: &str, rows: &[&Transaction], scores: &[f64]) -> Result<ModelProfile> {
    let mut features = Vec::with_capacity(N_FEATURES);
    for (i, name) in FEATURES.iter().enumerate() {
        if CATEGORICAL.contains(name) {
            features.push(profile::categorical(
                name,
                &MERCHANT_CATEGORIES,
                rows.iter().map(|t| t.merchant_category.as_str()),
            ));
        } else {
            let values: Vec<f64> = rows.iter().map(|t| f64::from(t.features()[i])).collect();
            features.push(profile::numeric(name, &values)?);
        }
    }
    Ok(ModelProfile {
        model: model.to_owned(),
        rows: rows.len() as u64,
        features,
        score: profile::reference("score", scores)?,
        performance: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Drift, GeneratorConfig, generate};

    fn rows(n: usize, seed: u64, drift: Drift) -> Vec<Transaction> {
        generate(&GeneratorConfig {
            rows: n,
            seed,
            drift,
            ..GeneratorConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn training_is_deterministic_and_ranks_fraud_well() {
        let data = rows(40_000, 7, Drift::default());
        let config = TrainConfig::default();
        let a = train(&data, &config).unwrap();
        let b = train(&data, &config).unwrap();
        assert_eq!(a.onnx, b.onnx, "same data and config, same model bytes");
        assert_eq!(a.report, b.report);
        let test = &a.report.test;
        assert!(test.roc_auc > 0.9, "{test:?}");
        assert!(test.pr_auc > 0.3, "{test:?}");
        assert!(test.recall_at_1pct_fpr > 0.4, "{test:?}");
        assert_eq!(a.report.train_rows + a.report.test_rows, 40_000);
        assert_eq!(a.profile.features.len(), N_FEATURES);
        assert_eq!(a.profile.score.n, a.report.train_rows);
        let perf = a.profile.performance.as_ref().unwrap();
        assert_eq!(perf.rows, a.report.test_rows);
        assert_eq!(perf.threshold, test.threshold_at_1pct_fpr);
        assert!((perf.pr_auc - test.pr_auc).abs() < 1e-12, "{perf:?}");
        // Old profiles, without the performance section, still read.
        let mut old: serde_json::Value =
            serde_json::from_str(&a.profile.to_json().unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("performance");
        let back = ModelProfile::from_json(&old.to_string()).unwrap();
        assert!(back.performance.is_none());
    }

    #[test]
    fn the_split_is_by_time() {
        let data = rows(10_000, 3, Drift::default());
        let trained = train(&data, &TrainConfig::default()).unwrap();
        let split = trained.report.split_timestamp;
        let after = data.iter().filter(|t| t.timestamp >= split).count() as u64;
        // Every held-out row is at or after the split (ties straddle it).
        assert!(after >= trained.report.test_rows, "{after}");
        assert!(after - trained.report.test_rows < 5);
    }

    #[test]
    fn concept_drift_costs_recall() {
        let trained = train(&rows(30_000, 11, Drift::default()), &TrainConfig::default()).unwrap();
        let model = OnnxModel::from_bytes(&trained.onnx).unwrap();
        let evaluate = |data: &[Transaction]| {
            let refs: Vec<&Transaction> = data.iter().collect();
            let scores = score(&model, &refs).unwrap();
            let labels: Vec<bool> = data.iter().map(Transaction::fraud).collect();
            metrics::evaluate(&scores, &labels).unwrap()
        };
        let same = evaluate(&rows(30_000, 12, Drift::default()));
        let shifted = evaluate(&rows(
            30_000,
            12,
            Drift {
                fraud_shift: 1.0,
                ..Drift::default()
            },
        ));
        assert!(
            shifted.recall_at_1pct_fpr < same.recall_at_1pct_fpr / 2.0,
            "{same:?} {shifted:?}"
        );
    }

    #[test]
    fn a_split_without_fraud_is_refused() {
        let mut data = rows(2_000, 1, Drift::default());
        for t in &mut data {
            t.is_fraud = 0;
        }
        let err = train(&data, &TrainConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs both fraudulent and honest"), "{err}");
    }
}
