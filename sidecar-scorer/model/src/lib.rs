//! The fraud model of outrider, from data to serving:
//!
//! - [`data`]: a seeded generator of card transactions with drift knobs;
//! - [`train`]: logistic regression on engineered features, exported as one
//!   ONNX graph, with ROC AUC, PR AUC and recall at 1% false positives;
//! - [`profile`]: the reference profile the drift monitor compares against;
//! - [`registry`]: runs, versions and aliases, embedded or in MLflow;
//! - [`serve`]: the Open Inference Protocol over REST and gRPC, streams and
//!   hot swaps, with tract running the model;
//! - [`batch`]: scoring CSV or NDJSON files;
//! - [`cli`]: the `outrider-model` command (`src/main.rs`).

pub mod batch;
pub mod cli;
pub mod data;
mod error;
pub mod onnx;
pub mod profile;
pub mod registry;
pub mod serve;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};

/// The Open Inference Protocol's gRPC messages and service (package
/// `inference`), generated from `proto/grpc_predict_v2.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}
