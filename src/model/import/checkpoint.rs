//! A Hugging Face checkpoint's weights: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Tensors are read one at a time (a 7B checkpoint never sits in
//! memory whole) and widened to f32 from F32, BF16 or F16.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{files, ImportError};

/// Where one tensor lies.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    dtype: String,
    shape: Vec<usize>,
    /// Elements in `shape` (checked not to overflow).
    count: usize,
    /// Absolute byte range in `file`.
    start: u64,
    len: u64,
}

pub struct Checkpoint {
    tensors: BTreeMap<String, Entry>,
    /// The stored dtypes, e.g. `{"BF16"}`, for the import report.
    pub dtypes: Vec<String>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self, ImportError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            let parsed = files::read_json(&index)?;
            let map = parsed
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ImportError::File {
                    path: index.clone(),
                    message: "has no weight_map".into(),
                })?;
            let mut shards = Vec::new();
            for (tensor, file) in map {
                let name = file.as_str().ok_or_else(|| ImportError::File {
                    path: index.clone(),
                    message: format!("weight_map puts {tensor} in {file}, which is no file name"),
                })?;
                shards.push(files::shard_path(dir, &index, name, tensor)?);
            }
            shards.sort();
            shards.dedup();
            shards
        } else {
            return Err(ImportError::File {
                path: dir.to_path_buf(),
                message: "holds no model.safetensors or model.safetensors.index.json (only \
                          safetensors checkpoints are imported; convert .bin weights first)"
                    .into(),
            });
        };
        let mut tensors = BTreeMap::new();
        let mut dtypes = Vec::new();
        for file in &files {
            files::inside(dir, file)?;
            for (name, entry) in read_header(file)? {
                if !dtypes.contains(&entry.dtype) {
                    dtypes.push(entry.dtype.clone());
                }
                tensors.insert(name, entry);
            }
        }
        Ok(Self { tensors, dtypes })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Result<&[usize], ImportError> {
        Ok(&self.entry(name)?.shape)
    }

    /// A refusal of tensor `name`, naming the file it lies in.
    pub fn refuse(&self, name: &str, message: String) -> ImportError {
        match self.tensors.get(name) {
            Some(e) => ImportError::File {
                path: e.file.clone(),
                message: format!("tensor {name} {message}"),
            },
            None => ImportError::Tensor {
                name: name.into(),
                message,
            },
        }
    }

    /// The tensor as f32, with its shape.
    pub fn read(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), ImportError> {
        let e = self.entry(name)?;
        let Some(width) = dtype_width(&e.dtype).filter(|_| FLOATS.contains(&e.dtype.as_str()))
        else {
            return Err(self.refuse(
                name,
                format!("has dtype {}; F32, BF16 and F16 are imported", e.dtype),
            ));
        };
        if (e.count as u64).checked_mul(width as u64) != Some(e.len) {
            return Err(self.refuse(
                name,
                format!(
                    "holds {} bytes for shape {:?} of {}",
                    e.len, e.shape, e.dtype
                ),
            ));
        }
        files::regular(&e.file)?;
        let mut bytes = vec![0u8; e.len as usize];
        let mut f = File::open(&e.file).map_err(ImportError::io(&e.file))?;
        f.seek(SeekFrom::Start(e.start))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(ImportError::io(&e.file))?;
        let values = match e.dtype.as_str() {
            "F32" => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            "BF16" => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        Ok((e.shape.clone(), values))
    }

    /// The tensor as f32, checked against the shape the architecture expects.
    pub fn read_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ImportError> {
        let found = self.shape(name)?;
        if found != shape {
            return Err(self.refuse(
                name,
                format!("has shape {found:?}, config.json implies {shape:?}"),
            ));
        }
        Ok(self.read(name)?.1)
    }

    fn entry(&self, name: &str) -> Result<&Entry, ImportError> {
        self.tensors.get(name).ok_or_else(|| ImportError::Tensor {
            name: name.into(),
            message: "is missing from the checkpoint".into(),
        })
    }
}

/// The dtypes a tensor is read from.
const FLOATS: [&str; 3] = ["F32", "BF16", "F16"];

/// Bytes per element of a safetensors dtype (`None`: not one the format defines).
fn dtype_width(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

fn read_header(file: &Path) -> Result<Vec<(String, Entry)>, ImportError> {
    let bad = |message: String| ImportError::File {
        path: file.to_path_buf(),
        message,
    };
    let size = files::regular(file)?;
    let mut f = File::open(file).map_err(ImportError::io(file))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(ImportError::io(file))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || 8 + n > size {
        return Err(bad(format!("not a safetensors file (header length {n})")));
    }
    let data_start = 8 + n;
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(ImportError::io(file))?;
    let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a safetensors header: {e}")))?;
    let mut out = Vec::new();
    for (name, v) in parsed {
        if name == "__metadata__" {
            continue;
        }
        let field = |k: &str| {
            v.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("tensor {name} has no {k}")))
        };
        let dtype = match field("dtype")? {
            serde_json::Value::String(s) => s,
            other => return Err(bad(format!("tensor {name}: dtype {other} is not a string"))),
        };
        let shape: Vec<usize> = serde_json::from_value(field("shape")?)
            .map_err(|e| bad(format!("tensor {name}: shape: {e}")))?;
        let offsets: [u64; 2] = serde_json::from_value(field("data_offsets")?)
            .map_err(|e| bad(format!("tensor {name}: data_offsets: {e}")))?;
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                bad(format!(
                    "tensor {name}: shape {shape:?} has more elements than any file holds"
                ))
            })?;
        let start = data_start.checked_add(offsets[0]);
        let end = data_start.checked_add(offsets[1]);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(bad(format!(
                "tensor {name} lies outside the file: data_offsets {offsets:?} are past any \
                 file's end"
            )));
        };
        if offsets[1] < offsets[0] || end > size {
            return Err(bad(format!(
                "tensor {name} lies outside the file: data_offsets {offsets:?} after a {n}-byte \
                 header, in a file of {size} bytes"
            )));
        }
        let len = end - start;
        if let Some(width) = dtype_width(&dtype) {
            let needed = (count as u64).checked_mul(width as u64);
            if needed != Some(len) {
                return Err(bad(format!(
                    "tensor {name}: data_offsets {offsets:?} hold {len} bytes, shape {shape:?} of \
                     {dtype} needs {}",
                    needed.map_or("more than 2^64".to_string(), |b| b.to_string())
                )));
            }
        }
        out.push((
            name,
            Entry {
                file: file.to_path_buf(),
                dtype,
                shape,
                count,
                start,
                len,
            },
        ));
    }
    Ok(out)
}
