//! ONNX: writing models (the trainer's output) and running them (tract).

pub mod builder;
pub mod runtime;

pub use runtime::{OnnxModel, TensorSpec};
