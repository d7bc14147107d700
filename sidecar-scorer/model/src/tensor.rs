//! Tensor values as the Open Inference Protocol carries them: a datatype
//! name, a shape and elements in row-major order; and their conversions to
//! JSON, to raw little-endian bytes and to tract tensors.

use serde_json::Value;
use tract_onnx::prelude::{Datum, DatumType, Tensor, tract_ndarray};

use crate::error::{Error, Result};

/// The protocol's tensor datatypes that outrider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 12] = [
        Self::Bool,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F32,
        Self::F64,
        Self::Bytes,
    ];

    /// The protocol's name (`FP32`, `INT64`, `BYTES`...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Parses a protocol datatype name; `field` names the tensor in errors.
    pub fn parse(name: &str, field: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|d| d.name()).collect();
                let what = if matches!(name, "FP16" | "BF16") {
                    format!("datatype {name} is not supported by this server")
                } else {
                    format!("unknown datatype `{name}`")
                };
                Error::invalid(field, format!("{what}; use one of {}", known.join(", ")))
            })
    }

    /// Size of one element in raw form; `None` for BYTES (length-prefixed).
    pub fn byte_size(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            Self::Bytes => return None,
        })
    }

    /// From an ONNX `TensorProto.DataType` code.
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::F32,
            2 => Self::U8,
            3 => Self::I8,
            4 => Self::U16,
            5 => Self::I16,
            6 => Self::I32,
            7 => Self::I64,
            8 => Self::Bytes,
            9 => Self::Bool,
            11 => Self::F64,
            12 => Self::U32,
            13 => Self::U64,
            _ => return None,
        })
    }

    pub fn to_tract(self) -> DatumType {
        match self {
            Self::Bool => DatumType::Bool,
            Self::U8 => DatumType::U8,
            Self::U16 => DatumType::U16,
            Self::U32 => DatumType::U32,
            Self::U64 => DatumType::U64,
            Self::I8 => DatumType::I8,
            Self::I16 => DatumType::I16,
            Self::I32 => DatumType::I32,
            Self::I64 => DatumType::I64,
            Self::F32 => DatumType::F32,
            Self::F64 => DatumType::F64,
            Self::Bytes => DatumType::String,
        }
    }

    fn from_tract(dt: DatumType) -> Option<Self> {
        Some(match dt {
            DatumType::Bool => Self::Bool,
            DatumType::U8 => Self::U8,
            DatumType::U16 => Self::U16,
            DatumType::U32 => Self::U32,
            DatumType::U64 => Self::U64,
            DatumType::I8 => Self::I8,
            DatumType::I16 => Self::I16,
            DatumType::I32 => Self::I32,
            DatumType::I64 => Self::I64,
            DatumType::F32 => Self::F32,
            DatumType::F64 => Self::F64,
            DatumType::String => Self::Bytes,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any numeric or bool variant.
macro_rules! each_fixed {
    ($e:expr, $v:ident => $body:expr, bytes $b:ident => $bbody:expr) => {
        match $e {
            Elements::Bool($v) => $body,
            Elements::U8($v) => $body,
            Elements::U16($v) => $body,
            Elements::U32($v) => $body,
            Elements::U64($v) => $body,
            Elements::I8($v) => $body,
            Elements::I16($v) => $body,
            Elements::I32($v) => $body,
            Elements::I64($v) => $body,
            Elements::F32($v) => $body,
            Elements::F64($v) => $body,
            Elements::Bytes($b) => $bbody,
        }
    };
}

/// Little-endian encoding of one fixed-size element.
trait Raw: Sized + Copy {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! raw_number {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
raw_number!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl Raw for bool {
    const SIZE: usize = 1;
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

fn decode_raw<T: Raw>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

fn encode_raw<T: Raw>(values: &[T], out: &mut Vec<u8>) {
    out.reserve(values.len() * T::SIZE);
    for v in values {
        v.write(out);
    }
}

impl Elements {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::U8(_) => DataType::U8,
            Self::U16(_) => DataType::U16,
            Self::U32(_) => DataType::U32,
            Self::U64(_) => DataType::U64,
            Self::I8(_) => DataType::I8,
            Self::I16(_) => DataType::I16,
            Self::I32(_) => DataType::I32,
            Self::I64(_) => DataType::I64,
            Self::F32(_) => DataType::F32,
            Self::F64(_) => DataType::F64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_fixed!(self, v => v.len(), bytes b => b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements from a JSON `data` value: a flat array or arrays nested as
    /// the shape (row-major either way).
    pub fn from_json(datatype: DataType, data: &Value, field: &str) -> Result<Self> {
        let mut flat = Vec::new();
        flatten(data, &mut flat, field)?;
        let bad = |i: usize, what: &str| {
            Error::invalid(
                field,
                format!(
                    "element {i} is {}, expected {what} for datatype {datatype}",
                    describe(flat[i])
                ),
            )
        };
        macro_rules! ints {
            ($variant:ident, $t:ty) => {{
                let mut out = Vec::with_capacity(flat.len());
                for (i, v) in flat.iter().enumerate() {
                    let n = v
                        .as_i64()
                        .and_then(|n| <$t>::try_from(n).ok())
                        .or_else(|| v.as_u64().and_then(|n| <$t>::try_from(n).ok()))
                        .ok_or_else(|| {
                            bad(i, concat!("an integer in the range of ", stringify!($t)))
                        })?;
                    out.push(n);
                }
                Self::$variant(out)
            }};
        }
        Ok(match datatype {
            DataType::Bool => Self::Bool(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, "true or false")))
                    .collect::<Result<_>>()?,
            ),
            DataType::U8 => ints!(U8, u8),
            DataType::U16 => ints!(U16, u16),
            DataType::U32 => ints!(U32, u32),
            DataType::U64 => ints!(U64, u64),
            DataType::I8 => ints!(I8, i8),
            DataType::I16 => ints!(I16, i16),
            DataType::I32 => ints!(I32, i32),
            DataType::I64 => ints!(I64, i64),
            DataType::F32 => Self::F32(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_f64()
                            .map(|x| x as f32)
                            .ok_or_else(|| bad(i, "a number"))
                    })
                    .collect::<Result<_>>()?,
            ),
            DataType::F64 => Self::F64(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().ok_or_else(|| bad(i, "a number")))
                    .collect::<Result<_>>()?,
            ),
            DataType::Bytes => Self::Bytes(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str()
                            .map(|s| s.as_bytes().to_vec())
                            .ok_or_else(|| bad(i, "a string"))
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// Elements from raw little-endian bytes; BYTES elements are each a
    /// 4-byte little-endian length followed by that many bytes.
    pub fn from_raw(datatype: DataType, bytes: &[u8], field: &str) -> Result<Self> {
        if let Some(size) = datatype.byte_size()
            && !bytes.len().is_multiple_of(size)
        {
            return Err(Error::invalid(
                field,
                format!(
                    "{} raw bytes are not a whole number of {datatype} elements ({size} bytes each)",
                    bytes.len()
                ),
            ));
        }
        Ok(match datatype {
            DataType::Bool => Self::Bool(decode_raw(bytes)),
            DataType::U8 => Self::U8(decode_raw(bytes)),
            DataType::U16 => Self::U16(decode_raw(bytes)),
            DataType::U32 => Self::U32(decode_raw(bytes)),
            DataType::U64 => Self::U64(decode_raw(bytes)),
            DataType::I8 => Self::I8(decode_raw(bytes)),
            DataType::I16 => Self::I16(decode_raw(bytes)),
            DataType::I32 => Self::I32(decode_raw(bytes)),
            DataType::I64 => Self::I64(decode_raw(bytes)),
            DataType::F32 => Self::F32(decode_raw(bytes)),
            DataType::F64 => Self::F64(decode_raw(bytes)),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(Error::invalid(
                            field,
                            "raw BYTES element without its 4-byte length",
                        ));
                    }
                    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    if rest.len() < 4 + n {
                        return Err(Error::invalid(
                            field,
                            format!(
                                "raw BYTES element of length {n} runs past the end of the data"
                            ),
                        ));
                    }
                    out.push(rest[4..4 + n].to_vec());
                    rest = &rest[4 + n..];
                }
                Self::Bytes(out)
            }
        })
    }

    /// The raw little-endian form (see [`Elements::from_raw`]).
    pub fn to_raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        each_fixed!(self, v => encode_raw(v, &mut out), bytes b => {
            for s in b {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
        });
        out
    }

    /// The first non-finite float element, if any.
    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        match self {
            Self::F32(v) => v
                .iter()
                .position(|x| !x.is_finite())
                .map(|i| (i, f64::from(v[i]))),
            Self::F64(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
            _ => None,
        }
    }

    /// A tract tensor of `shape` (whose element count the caller checked).
    pub fn into_tract(self, shape: &[usize]) -> Result<Tensor> {
        match self {
            Self::Bytes(b) => {
                let strings: Vec<String> = b
                    .into_iter()
                    .map(|s| String::from_utf8_lossy(&s).into_owned())
                    .collect();
                tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), strings)
                    .map(Tensor::from)
                    .map_err(Error::model)
            }
            Self::Bool(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::U8(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::U16(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::U32(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::U64(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::I8(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::I16(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::I32(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::I64(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::F32(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
            Self::F64(v) => Tensor::from_shape(shape, &v).map_err(Error::model),
        }
    }

    /// The elements of a tract tensor.
    pub fn from_tract(tensor: &Tensor) -> Result<Self> {
        let dt = DataType::from_tract(tensor.datum_type()).ok_or_else(|| {
            Error::model(format!(
                "the model produced a {:?} tensor, which the protocol cannot carry",
                tensor.datum_type()
            ))
        })?;
        macro_rules! copy {
            ($variant:ident, $t:ty) => {
                Self::$variant(slice_of::<$t>(tensor)?.to_vec())
            };
        }
        Ok(match dt {
            DataType::Bool => copy!(Bool, bool),
            DataType::U8 => copy!(U8, u8),
            DataType::U16 => copy!(U16, u16),
            DataType::U32 => copy!(U32, u32),
            DataType::U64 => copy!(U64, u64),
            DataType::I8 => copy!(I8, i8),
            DataType::I16 => copy!(I16, i16),
            DataType::I32 => copy!(I32, i32),
            DataType::I64 => copy!(I64, i64),
            DataType::F32 => copy!(F32, f32),
            DataType::F64 => copy!(F64, f64),
            DataType::Bytes => Self::Bytes(
                slice_of::<String>(tensor)?
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
            ),
        })
    }
}

/// The elements of a tensor of `T`, in row-major order.
pub fn slice_of<T: Datum>(tensor: &Tensor) -> Result<&[T]> {
    tensor
        .try_as_plain_ram()
        .and_then(|view| view.as_slice::<T>())
        .map_err(Error::model)
}

/// Serialises the elements as a flat JSON array; floats keep their own
/// precision (an FP32 0.1 is written `0.1`), BYTES are written as strings.
impl serde::Serialize for Elements {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Self::Bytes(b) => {
                let mut seq = s.serialize_seq(Some(b.len()))?;
                for item in b {
                    seq.serialize_element(&String::from_utf8_lossy(item))?;
                }
                seq.end()
            }
            Self::Bool(v) => v.serialize(s),
            Self::U8(v) => v.serialize(s),
            Self::U16(v) => v.serialize(s),
            Self::U32(v) => v.serialize(s),
            Self::U64(v) => v.serialize(s),
            Self::I8(v) => v.serialize(s),
            Self::I16(v) => v.serialize(s),
            Self::I32(v) => v.serialize(s),
            Self::I64(v) => v.serialize(s),
            Self::F32(v) => v.serialize(s),
            Self::F64(v) => v.serialize(s),
        }
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>, field: &str) -> Result<()> {
    match value {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) => flatten(item, out, field)?,
                    other => out.push(other),
                }
            }
            Ok(())
        }
        other => Err(Error::invalid(
            field,
            format!("`data` must be an array, got {}", describe(other)),
        )),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 20 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_data_may_be_flat_or_nested() {
        let flat = Elements::from_json(DataType::F32, &json!([1, 2.5, 3, 4]), "x").unwrap();
        let nested = Elements::from_json(DataType::F32, &json!([[1, 2.5], [3, 4]]), "x").unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, Elements::F32(vec![1.0, 2.5, 3.0, 4.0]));
    }

    #[test]
    fn json_elements_are_checked_against_the_datatype() {
        let err = Elements::from_json(DataType::I8, &json!([1, 300]), "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: element 1 is the number 300, expected an integer in the range of i8 for datatype INT8"
        );
        let err = Elements::from_json(DataType::F32, &json!([1, "a"]), "x").unwrap_err();
        assert!(
            err.to_string().contains("element 1 is the string \"a\""),
            "{err}"
        );
        let err = Elements::from_json(DataType::F32, &json!({"a": 1}), "x").unwrap_err();
        assert!(err.to_string().contains("must be an array"), "{err}");
        let err = DataType::parse("FP16", "x").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn raw_bytes_round_trip() {
        for e in [
            Elements::F32(vec![1.5, -2.0]),
            Elements::I64(vec![-1, 1 << 40]),
            Elements::Bool(vec![true, false, true]),
            Elements::Bytes(vec![b"ab".to_vec(), Vec::new(), b"xyz".to_vec()]),
        ] {
            let raw = e.to_raw();
            assert_eq!(Elements::from_raw(e.datatype(), &raw, "x").unwrap(), e);
        }
        assert_eq!(Elements::F32(vec![1.0]).to_raw(), 1f32.to_le_bytes());
        assert!(Elements::from_raw(DataType::F32, &[0; 6], "x").is_err());
        assert!(Elements::from_raw(DataType::Bytes, &[5, 0, 0, 0, 1], "x").is_err());
    }

    #[test]
    fn non_finite_values_are_found() {
        assert_eq!(
            Elements::F32(vec![1.0, f32::NAN])
                .first_non_finite()
                .map(|p| p.0),
            Some(1)
        );
        assert_eq!(Elements::F64(vec![1.0]).first_non_finite(), None);
    }
}
