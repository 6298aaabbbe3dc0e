//! A small ONNX graph builder: nodes with fresh output names, constants, and weights that go
//! into the protobuf or, past a size, into an external data file beside it (protobuf files stop
//! at 2 GiB; a 7B backbone is 28 GB in f32).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::proto::*;

/// A file the builder writes (the external data) could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct GraphError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl GraphError {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Weights at least this large go to the external data file.
const EXTERNAL_FROM_BYTES: usize = 1 << 10;

pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    data: Option<(BufWriter<File>, PathBuf, String, u64)>,
    counter: usize,
    /// Initializer names: a constant asked for again by name is the one already there.
    defined: std::collections::HashSet<String>,
    /// Whether a node uses ONNX Runtime's `com.microsoft` operators (the opset is then imported).
    uses_contrib: bool,
}

/// ONNX Runtime's contrib operator domain (fused kernels on CPU and CUDA).
const CONTRIB: &str = "com.microsoft";

pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

impl Graph {
    /// A graph whose large weights are written to `data_path` (named relative to the model file);
    /// `None`: every weight stays in the protobuf (small graphs, built in memory).
    pub fn new(data_path: Option<&Path>) -> Result<Self, GraphError> {
        let data = match data_path {
            Some(p) => {
                let file = File::create(p).map_err(GraphError::at(p))?;
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some((BufWriter::new(file), p.to_path_buf(), name, 0))
            }
            None => None,
        };
        Ok(Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            data,
            counter: 0,
            defined: Default::default(),
            uses_contrib: false,
        })
    }

    /// Adds `op` and returns its (fresh) output name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.counter += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.counter);
        self.op_named(op, inputs, attrs, &output);
        output
    }

    /// Adds ONNX Runtime's contrib operator `op` (domain `com.microsoft`), returns its output.
    pub fn contrib_op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let output = self.op(op, inputs, attrs);
        if let Some(node) = self.nodes.last_mut() {
            node.domain = CONTRIB.into();
        }
        self.uses_contrib = true;
        output
    }

    /// Adds `op` writing to `output`.
    pub fn op_named(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], output: &str) {
        let attribute = attrs
            .iter()
            .map(|(name, a)| match a {
                Attr::Int(i) => AttributeProto {
                    name: name.to_string(),
                    i: *i,
                    r#type: 2,
                    ..Default::default()
                },
                Attr::Ints(v) => AttributeProto {
                    name: name.to_string(),
                    ints: v.clone(),
                    r#type: 7,
                    ..Default::default()
                },
                Attr::Float(f) => AttributeProto {
                    name: name.to_string(),
                    f: *f,
                    r#type: 1,
                    ..Default::default()
                },
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute,
            domain: String::new(),
        });
    }

    /// Renames the outputs of the last node added (for operators with several outputs).
    pub fn outputs_of_last(&mut self, outputs: &[&str]) {
        if let Some(node) = self.nodes.last_mut() {
            node.output = outputs.iter().map(|s| s.to_string()).collect();
        }
    }

    /// An int64 constant (`dims` empty: a scalar).
    pub fn ints(&mut self, name: &str, dims: &[i64], values: &[i64]) -> String {
        if !self.defined.insert(name.to_string()) {
            return name.into();
        }
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DTYPE_INT64,
            name: name.into(),
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name.into()
    }

    /// A tensor of any element type from its little-endian bytes (`data_type`: ONNX's enum).
    pub fn raw(
        &mut self,
        name: &str,
        dims: &[usize],
        data_type: i32,
        raw: Vec<u8>,
    ) -> Result<String, GraphError> {
        if !self.defined.insert(name.to_string()) {
            return Ok(name.into());
        }
        let mut tensor = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.into(),
            ..Default::default()
        };
        self.place(&mut tensor, raw)?;
        self.initializers.push(tensor);
        Ok(name.into())
    }

    /// An f16 weight or constant (each value rounded to the nearest f16).
    pub fn halves(
        &mut self,
        name: &str,
        dims: &[usize],
        values: &[f32],
    ) -> Result<String, GraphError> {
        let raw: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        self.raw(name, dims, DTYPE_FLOAT16, raw)
    }

    /// A weight or constant in f16 when `half`, else in f32.
    pub fn floats_in(
        &mut self,
        half: bool,
        name: &str,
        dims: &[usize],
        values: &[f32],
    ) -> Result<String, GraphError> {
        if half {
            self.halves(name, dims, values)
        } else {
            self.floats(name, dims, values)
        }
    }

    /// `x` as f16 when `half` (a Cast), else `x` itself.
    pub fn narrow(&mut self, x: &str, half: bool) -> String {
        if half {
            self.op("Cast", &[x], &[("to", Attr::Int(DTYPE_FLOAT16 as i64))])
        } else {
            x.to_string()
        }
    }

    /// `x` as f32 when `half` (a Cast from f16), else `x` itself.
    pub fn widen(&mut self, x: &str, half: bool) -> String {
        if half {
            self.op("Cast", &[x], &[("to", Attr::Int(DTYPE_FLOAT as i64))])
        } else {
            x.to_string()
        }
    }

    /// An f32 weight or constant.
    pub fn floats(
        &mut self,
        name: &str,
        dims: &[usize],
        values: &[f32],
    ) -> Result<String, GraphError> {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, dims, DTYPE_FLOAT, raw)
    }

    /// Puts `raw` in the tensor, or in the external data file when it is large.
    fn place(&mut self, tensor: &mut TensorProto, raw: Vec<u8>) -> Result<(), GraphError> {
        match &mut self.data {
            Some((writer, path, file_name, offset)) if raw.len() >= EXTERNAL_FROM_BYTES => {
                writer.write_all(&raw).map_err(GraphError::at(path))?;
                let entry = |key: &str, value: String| StringStringEntryProto {
                    key: key.into(),
                    value,
                };
                tensor.external_data = vec![
                    entry("location", file_name.clone()),
                    entry("offset", offset.to_string()),
                    entry("length", raw.len().to_string()),
                ];
                tensor.data_location = 1;
                *offset += raw.len() as u64;
            }
            _ => tensor.raw_data = raw,
        }
        Ok(())
    }

    /// The model: its external data flushed to disk, its graph `name` with these inputs and
    /// outputs, and `metadata` as its properties. Opset 17, and ONNX Runtime's contrib opset when
    /// a contrib operator was used.
    pub fn into_model(
        mut self,
        name: &str,
        input: Vec<ValueInfoProto>,
        output: Vec<ValueInfoProto>,
        doc: &str,
        metadata: &[(&str, String)],
    ) -> Result<ModelProto, GraphError> {
        if let Some((mut writer, data_path, _, _)) = self.data.take() {
            writer.flush().map_err(GraphError::at(&data_path))?;
            writer
                .into_inner()
                .map_err(|e| GraphError::at(&data_path)(e.into_error()))?
                .sync_all()
                .map_err(GraphError::at(&data_path))?;
        }
        let graph = GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            input,
            output,
        };
        Ok(ModelProto {
            ir_version: 8,
            producer_name: "actprm".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(graph),
            opset_import: std::iter::once(OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            })
            .chain(self.uses_contrib.then(|| OperatorSetIdProto {
                domain: CONTRIB.into(),
                version: 1,
            }))
            .collect(),
            metadata_props: metadata
                .iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
        })
    }
}
