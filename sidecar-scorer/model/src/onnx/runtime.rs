//! ONNX models run by tract: loaded once (parsed, typed, optimised), then run
//! from any number of threads.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::tensor::DataType;

/// An input or output of a model. `shape` holds -1 for a dimension of any
/// size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether `shape` fits this spec (same rank, fixed dimensions equal).
    pub fn accepts(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got)
    }
}

/// A loaded, optimised ONNX model.
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The model's `metadata_props`.
    pub metadata: BTreeMap<String, String>,
    pub producer: String,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("producer", &self.producer)
            .finish()
    }
}

/// A graph input or output as declared, with the names of its symbolic
/// dimensions (so that an output's batch follows its input's).
struct Declared {
    spec: TensorSpec,
    dim_params: Vec<Option<String>>,
}

fn declared(info: &pb::ValueInfoProto, what: &str) -> Result<Declared> {
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => {
            return Err(Error::model(format!(
                "{what} `{}` is not a tensor (a sequence or a map?); serve models whose inputs \
                 and outputs are tensors (for scikit-learn classifiers, convert with \
                 zipmap=False)",
                info.name
            )));
        }
    };
    let datatype = DataType::from_onnx(tensor.elem_type).ok_or_else(|| {
        Error::model(format!(
            "{what} `{}` has ONNX element type {}, which this server does not serve",
            info.name, tensor.elem_type
        ))
    })?;
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or(&[]);
    let shape = dims
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(n)) if n >= 0 => n,
            _ => -1,
        })
        .collect();
    let dim_params = dims
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Some(p.clone()),
            _ => None,
        })
        .collect();
    Ok(Declared {
        spec: TensorSpec {
            name: info.name.clone(),
            datatype,
            shape,
        },
        dim_params,
    })
}

impl OnnxModel {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        Self::from_bytes(&bytes)
            .map_err(|e| Error::model(format!("{}: {}", path.display(), strip_prefix(&e))))
    }

    /// Parses, types and optimises a serialised ONNX model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let proto = pb::ModelProto::decode(bytes)
            .map_err(|e| Error::model(format!("not an ONNX model ({e})")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| Error::model("not an ONNX model (no graph)"))?;
        let initialized: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<Declared> = graph
            .input
            .iter()
            .filter(|i| !initialized.contains(i.name.as_str()))
            .map(|i| declared(i, "input"))
            .collect::<Result<_>>()?;
        let outputs: Vec<Declared> = graph
            .output
            .iter()
            .map(|o| declared(o, "output"))
            .collect::<Result<_>>()?;
        if inputs.is_empty() || outputs.is_empty() {
            return Err(Error::model("the model declares no inputs or no outputs"));
        }

        let run = || -> TractResult<Arc<TypedRunnableModel>> {
            let mut model = tract_onnx::onnx().model_for_proto_model(&proto)?;
            for (i, input) in inputs.iter().enumerate() {
                let dims: TVec<TDim> = input
                    .spec
                    .shape
                    .iter()
                    .zip(&input.dim_params)
                    .enumerate()
                    .map(|(j, (&n, param))| match (n, param) {
                        (n, _) if n >= 0 => n.to_dim(),
                        (_, Some(p)) => model.symbols.sym(p).to_dim(),
                        (_, None) => model.symbols.sym(&format!("input{i}_dim{j}")).to_dim(),
                    })
                    .collect();
                let fact = InferenceFact::dt_shape(input.spec.datatype.to_tract(), dims);
                model.set_input_fact(i, fact)?;
            }
            model.into_optimized()?.into_runnable()
        };
        let plan = std::panic::catch_unwind(AssertUnwindSafe(run))
            .map_err(|_| Error::model("the model could not be loaded (tract failed on it)"))?
            .map_err(|e| Error::model(format!("the model could not be loaded: {e:#}")))?;

        Ok(Self {
            plan,
            inputs: inputs.into_iter().map(|d| d.spec).collect(),
            outputs: outputs.into_iter().map(|d| d.spec).collect(),
            metadata: proto
                .metadata_props
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            producer: proto.producer_name.clone(),
        })
    }

    /// Runs the model on tensors given in the order of [`Self::inputs`];
    /// returns the outputs in the order of [`Self::outputs`].
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let inputs: TVec<TValue> = inputs.into_iter().map(Tensor::into_tvalue).collect();
        // A panic inside the runtime must fail this request, not the server.
        let outputs = std::panic::catch_unwind(AssertUnwindSafe(|| self.plan.run(inputs)))
            .map_err(|_| Error::model("inference failed inside the runtime"))?
            .map_err(|e| Error::model(format!("inference failed: {e:#}")))?;
        Ok(outputs.into_iter().map(TValue::into_tensor).collect())
    }

    /// Index of an output by name.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }
}

fn strip_prefix(e: &Error) -> String {
    match e {
        Error::Model(m) => m.clone(),
        other => other.to_string(),
    }
}
