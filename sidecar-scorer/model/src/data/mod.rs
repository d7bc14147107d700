//! Card transactions: the schema, a seeded generator with drift knobs, and
//! CSV files.

pub mod csv_file;
pub mod generator;
pub mod schema;
pub mod transaction;

pub use generator::{Drift, GeneratorConfig, generate};
pub use transaction::Transaction;
