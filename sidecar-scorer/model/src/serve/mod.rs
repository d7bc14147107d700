//! Serving with the Open Inference Protocol (KServe v2): REST and gRPC, a
//! bidirectional gRPC stream, an NDJSON scoring stream, and hot swaps.

pub mod grpc;
pub mod infer;
pub mod model;
pub mod ndjson;
pub mod rest;
pub mod rest_codec;
pub mod rows;
pub mod server;
pub mod slot;
pub mod state;

pub use server::{ServeOptions, Server};
