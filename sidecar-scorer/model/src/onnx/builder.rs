//! Writes ONNX models with the protobuf types that tract-onnx exposes, so the
//! models outrider trains are plain ONNX files any runtime loads.

use prost::Message;
use tract_onnx::pb::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension, type_proto,
};

/// ONNX IR version 8 and operator set 13: read by onnxruntime and by tract
/// (tested there against sets 9 to 18).
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 13;

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    /// A named dimension of any size (the batch).
    Named(&'static str),
}

/// An attribute of a node.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

/// Builds one graph: nodes are appended in order, each output named uniquely.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    counter: usize,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
                Dim::Named(s) => dimension::Value::DimParam((*s).to_owned()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// Declares a float input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, DataType::Float, dims));
        name.to_owned()
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// A float constant of the given shape.
    pub fn const_f32(&mut self, hint: &str, dims: &[i64], data: Vec<f32>) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: data,
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// A float scalar constant, broadcast against any tensor.
    pub fn scalar_f32(&mut self, hint: &str, value: f32) -> String {
        self.const_f32(hint, &[], vec![value])
    }

    /// Appends a node with one output and returns that output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_with_outputs(op, inputs, attrs, std::slice::from_ref(&output));
        output
    }

    /// Appends a node whose outputs are named by the caller.
    pub fn node_with_outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        outputs: &[String],
    ) {
        let attribute = attrs
            .into_iter()
            .map(|(name, value)| {
                let mut a = AttributeProto {
                    name: name.to_owned(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(i) => {
                        a.r#type = AttributeType::Int as i32;
                        a.i = i;
                    }
                    Attr::Ints(v) => {
                        a.r#type = AttributeType::Ints as i32;
                        a.ints = v;
                    }
                }
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.to_vec(),
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.to_owned(),
            attribute,
            ..Default::default()
        });
    }

    /// Renames a value: an Identity node whose output carries `name`.
    pub fn output_as(&mut self, value: &str, name: &str) -> String {
        self.node_with_outputs("Identity", &[value], vec![], &[name.to_owned()]);
        name.to_owned()
    }

    /// The finished model with the given float outputs and metadata.
    pub fn finish(
        self,
        graph_name: &str,
        outputs: &[(&str, &[Dim])],
        metadata: &[(&str, String)],
        doc: &str,
    ) -> ModelProto {
        let output = outputs
            .iter()
            .map(|(name, dims)| value_info(name, DataType::Float, dims))
            .collect();
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "outrider".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            doc_string: doc.to_owned(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: graph_name.to_owned(),
                initializer: self.initializers,
                input: self.inputs,
                output,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: (*k).to_owned(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The serialised model.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
