//! Rows (one transaction with named fields) as model input, and the score
//! read back: what the NDJSON stream and batch scoring use. The mapping comes
//! from the model's ONNX metadata, so a model trained elsewhere (for example
//! in scikit-learn) is scored the same way when it carries these keys:
//!
//! - `outrider.features`: JSON array of the input's column names;
//! - `outrider.categories`: JSON object from a column to its category names,
//!   in code order (a name not listed is scored as code -1, unseen);
//! - `outrider.score`: `{"output": name, "column": i}`, the score's place.
//!
//! Without them a model with one `[N, F]` float input is still served: rows
//! are then JSON arrays of F numbers (or CSV files with columns `x0`..), and
//! the score is the first `[N, 1]` float output, or column 1 (the positive
//! class) of a `[N, 2]` one.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::onnx::OnnxModel;
use crate::tensor::DataType;

pub const METADATA_FEATURES: &str = "outrider.features";
pub const METADATA_CATEGORIES: &str = "outrider.categories";
pub const METADATA_SCORE: &str = "outrider.score";

/// How rows map onto a model.
#[derive(Debug, Clone)]
pub struct RowSchema {
    pub input: String,
    pub datatype: DataType,
    pub features: Vec<String>,
    /// Per feature: category name to code, for categorical ones.
    categories: Vec<Option<HashMap<String, f32>>>,
    /// Index of the score output among the model's outputs.
    pub score_output: usize,
    pub score_column: usize,
    /// Columns of the score output (1 for `[N]` or `[N, 1]`).
    pub score_width: usize,
}

#[derive(Deserialize)]
struct ScoreSpec {
    output: String,
    #[serde(default)]
    column: usize,
}

fn metadata_json<T: for<'de> Deserialize<'de>>(model: &OnnxModel, key: &str) -> Result<Option<T>> {
    model
        .metadata
        .get(key)
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| Error::model(format!("metadata `{key}` is not valid: {e}")))
        })
        .transpose()
}

impl RowSchema {
    /// The schema of a model, or why rows cannot be scored by it.
    pub fn from_model(model: &OnnxModel) -> Result<Self> {
        let [input] = model.inputs.as_slice() else {
            return Err(Error::model(format!(
                "row scoring needs a model with one input, this one has {}",
                model.inputs.len()
            )));
        };
        let width = match input.shape.as_slice() {
            [_, w] if *w > 0 => *w as usize,
            _ => {
                return Err(Error::model(format!(
                    "row scoring needs an input of shape [N, features], `{}` has {:?}",
                    input.name, input.shape
                )));
            }
        };
        if !matches!(input.datatype, DataType::F32 | DataType::F64) {
            return Err(Error::model(format!(
                "row scoring needs a float input, `{}` is {}",
                input.name, input.datatype
            )));
        }
        let features: Vec<String> = metadata_json(model, METADATA_FEATURES)?
            .unwrap_or_else(|| (0..width).map(|i| format!("x{i}")).collect());
        if features.len() != width {
            return Err(Error::model(format!(
                "metadata `{METADATA_FEATURES}` names {} features, the input has {width}",
                features.len()
            )));
        }
        let named: HashMap<String, Vec<String>> =
            metadata_json(model, METADATA_CATEGORIES)?.unwrap_or_default();
        let categories = features
            .iter()
            .map(|f| {
                named.get(f).map(|names| {
                    names
                        .iter()
                        .enumerate()
                        .map(|(code, n)| (n.clone(), code as f32))
                        .collect()
                })
            })
            .collect();

        let score: Option<ScoreSpec> = metadata_json(model, METADATA_SCORE)?;
        let (score_output, score_column) = match score {
            Some(s) => (
                model.output_index(&s.output).ok_or_else(|| {
                    Error::model(format!(
                        "metadata `{METADATA_SCORE}` names no output of the model"
                    ))
                })?,
                s.column,
            ),
            None => default_score(model)?,
        };
        let out = &model.outputs[score_output];
        let score_width = match out.shape.as_slice() {
            [_] => 1,
            [_, w] if *w > 0 => *w as usize,
            _ => {
                return Err(Error::model(format!(
                    "the score output `{}` must have shape [N] or [N, k], not {:?}",
                    out.name, out.shape
                )));
            }
        };
        if score_column >= score_width || !matches!(out.datatype, DataType::F32 | DataType::F64) {
            return Err(Error::model(format!(
                "the score output `{}` has no float column {score_column}",
                out.name
            )));
        }
        Ok(Self {
            input: input.name.clone(),
            datatype: input.datatype,
            features,
            categories,
            score_output,
            score_column,
            score_width,
        })
    }

    pub fn width(&self) -> usize {
        self.features.len()
    }

    /// The value of one field (`line` and `field` name errors): a number, a
    /// boolean, or for a categorical feature a category name.
    pub fn value(&self, feature: usize, raw: &Value) -> std::result::Result<f32, String> {
        let x = match raw {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN) as f32,
            Value::Bool(b) => f32::from(u8::from(*b)),
            Value::String(s) => return self.text_value(feature, s),
            Value::Null => return Err("is null".into()),
            _ => return Err("must be a number".into()),
        };
        finite(x)
    }

    /// The value of one field given as text (a CSV cell).
    pub fn text_value(&self, feature: usize, text: &str) -> std::result::Result<f32, String> {
        if let Some(codes) = &self.categories[feature] {
            if let Some(&code) = codes.get(text) {
                return Ok(code);
            }
            if let Ok(code) = text.parse::<f32>() {
                return finite(code);
            }
            // A category the model never saw: scored as unseen.
            return Ok(-1.0);
        }
        match text.trim() {
            "" => Err("is empty".into()),
            t => t
                .parse::<f32>()
                .map_err(|_| format!("`{t}` is not a number"))
                .and_then(finite),
        }
    }

    /// One row from a JSON line: an object with the feature names, or an
    /// array of the values in input order. Appends the values to `out`.
    pub fn push_json_row(&self, row: &Value, out: &mut Vec<f32>) -> Result<()> {
        let start = out.len();
        let result = (|| match row {
            Value::Object(fields) => {
                for (i, name) in self.features.iter().enumerate() {
                    let raw = fields
                        .get(name)
                        .ok_or_else(|| Error::invalid(name.as_str(), "is missing"))?;
                    out.push(
                        self.value(i, raw)
                            .map_err(|m| Error::invalid(name.as_str(), m))?,
                    );
                }
                Ok(())
            }
            Value::Array(values) => {
                if values.len() != self.width() {
                    return Err(Error::invalid(
                        "row",
                        format!(
                            "has {} values, the model takes {}",
                            values.len(),
                            self.width()
                        ),
                    ));
                }
                for (i, raw) in values.iter().enumerate() {
                    out.push(
                        self.value(i, raw)
                            .map_err(|m| Error::invalid(self.features[i].as_str(), m))?,
                    );
                }
                Ok(())
            }
            _ => Err(Error::invalid(
                "row",
                "must be a JSON object of features or an array of values",
            )),
        })();
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Scores from the model's outputs.
    pub fn scores(&self, outputs: &[tract_onnx::prelude::Tensor]) -> Result<Vec<Score>> {
        let out = &outputs[self.score_output];
        let pick = |i: usize| i * self.score_width + self.score_column;
        match out.datum_type() {
            tract_onnx::prelude::DatumType::F32 => {
                let v = crate::tensor::slice_of::<f32>(out)?;
                Ok((0..v.len() / self.score_width)
                    .map(|i| Score::F32(v[pick(i)]))
                    .collect())
            }
            tract_onnx::prelude::DatumType::F64 => {
                let v = crate::tensor::slice_of::<f64>(out)?;
                Ok((0..v.len() / self.score_width)
                    .map(|i| Score::F64(v[pick(i)]))
                    .collect())
            }
            other => Err(Error::model(format!(
                "the score output is {other:?}, not a float"
            ))),
        }
    }

    /// An `[n, width]` input tensor from row-major values.
    pub fn tensor(&self, values: &[f32]) -> Result<tract_onnx::prelude::Tensor> {
        let shape = [values.len() / self.width(), self.width()];
        let t = match self.datatype {
            DataType::F64 => {
                let v: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
                tract_onnx::prelude::Tensor::from_shape(&shape, &v)
            }
            _ => tract_onnx::prelude::Tensor::from_shape(&shape, values),
        };
        t.map_err(Error::model)
    }
}

/// A score in the precision the model produced it (an FP32 score is written
/// with FP32's shortest round-trip digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    F32(f32),
    F64(f64),
}

impl Score {
    pub fn value(self) -> f64 {
        match self {
            Self::F32(x) => f64::from(x),
            Self::F64(x) => x,
        }
    }
}

impl serde::Serialize for Score {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::F32(x) => s.serialize_f32(*x),
            Self::F64(x) => s.serialize_f64(*x),
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::F32(x) => write!(f, "{x}"),
            Self::F64(x) => write!(f, "{x}"),
        }
    }
}

fn finite(x: f32) -> std::result::Result<f32, String> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("must be a finite number, got {x}"))
    }
}

/// The first `[N]`/`[N, 1]` float output, else column 1 of a `[N, 2]` one.
fn default_score(model: &OnnxModel) -> Result<(usize, usize)> {
    let float = |i: &usize| matches!(model.outputs[*i].datatype, DataType::F32 | DataType::F64);
    let idx = 0..model.outputs.len();
    if let Some(i) = idx
        .clone()
        .filter(float)
        .find(|&i| matches!(model.outputs[i].shape.as_slice(), [_] | [_, 1]))
    {
        return Ok((i, 0));
    }
    if let Some(i) = idx
        .filter(float)
        .find(|&i| matches!(model.outputs[i].shape.as_slice(), [_, 2]))
    {
        return Ok((i, 1));
    }
    Err(Error::model(format!(
        "no output looks like a score (a float [N, 1], or [N, 2] class probabilities); \
         name it in metadata `{METADATA_SCORE}`"
    )))
}
