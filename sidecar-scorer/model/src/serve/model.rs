//! A model as served: its ONNX graph, the name and version it answers to,
//! and the row schema of the NDJSON stream and batch scoring.

use crate::error::{Error, Result};
use crate::onnx::{OnnxModel, TensorSpec};
use crate::profile::ModelProfile;
use crate::registry::ModelFiles;
use crate::serve::rows::RowSchema;

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    /// Where it came from (a model URI or a path).
    pub source: String,
    pub onnx: OnnxModel,
    /// `None` when the model does not take rows (see [`RowSchema`]); why is
    /// in `rows_unavailable`.
    pub rows: Option<RowSchema>,
    pub rows_unavailable: Option<String>,
    pub profile: Option<ModelProfile>,
}

impl LoadedModel {
    /// Loads a model from its files; a bad ONNX file is an
    /// [`Error::Invalid`] naming the source.
    pub fn from_files(name: &str, files: ModelFiles, source: &str) -> Result<Self> {
        let onnx = OnnxModel::from_bytes(&files.onnx).map_err(|e| {
            Error::invalid(
                "model",
                format!(
                    "{source}: {}",
                    match e {
                        Error::Model(m) => m,
                        other => other.to_string(),
                    }
                ),
            )
        })?;
        let (rows, rows_unavailable) = match RowSchema::from_model(&onnx) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Self {
            name: name.to_owned(),
            version: files.version.version.to_string(),
            source: source.to_owned(),
            onnx,
            rows,
            rows_unavailable,
            profile: files.profile,
        })
    }

    pub fn input(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.onnx
            .inputs
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    /// The row schema, or why this model takes no rows.
    pub fn rows(&self) -> Result<&RowSchema> {
        self.rows.as_ref().ok_or_else(|| {
            Error::invalid(
                "model",
                format!(
                    "model `{}` cannot score rows: {}",
                    self.name,
                    self.rows_unavailable.as_deref().unwrap_or("no row schema")
                ),
            )
        })
    }

    /// `FP32 [-1, 10]`-style description of the inputs, for error messages.
    pub fn describe_inputs(&self) -> String {
        self.onnx
            .inputs
            .iter()
            .map(|s| format!("`{}` ({} {:?})", s.name, s.datatype, s.shape))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
