//! A Hugging Face checkpoint's weights: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Tensors are read one at a time (a 7B checkpoint never sits in
//! memory whole) and widened to f32 from F32, BF16 or F16.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ImportError;

/// Where one tensor lies.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    dtype: String,
    shape: Vec<usize>,
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
            let text = std::fs::read_to_string(&index).map_err(ImportError::io(&index))?;
            let parsed: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ImportError::File {
                    path: index.clone(),
                    message: e.to_string(),
                })?;
            let map = parsed
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ImportError::File {
                    path: index.clone(),
                    message: "has no weight_map".into(),
                })?;
            let mut shards: Vec<PathBuf> = map
                .values()
                .filter_map(|v| v.as_str())
                .map(|f| dir.join(f))
                .collect();
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

    /// The tensor as f32, with its shape.
    pub fn read(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), ImportError> {
        let e = self.entry(name)?;
        let mut bytes = vec![0u8; e.len as usize];
        let mut f = File::open(&e.file).map_err(ImportError::io(&e.file))?;
        f.seek(SeekFrom::Start(e.start))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(ImportError::io(&e.file))?;
        let count: usize = e.shape.iter().product();
        let width = match e.dtype.as_str() {
            "F32" => 4,
            "BF16" | "F16" => 2,
            other => {
                return Err(ImportError::Tensor {
                    name: name.into(),
                    message: format!("has dtype {other}; F32, BF16 and F16 are imported"),
                })
            }
        };
        if bytes.len() != count * width {
            return Err(ImportError::Tensor {
                name: name.into(),
                message: format!(
                    "holds {} bytes for shape {:?} of {}",
                    bytes.len(),
                    e.shape,
                    e.dtype
                ),
            });
        }
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
        let (found, values) = self.read(name)?;
        if found != shape {
            return Err(ImportError::Tensor {
                name: name.into(),
                message: format!("has shape {found:?}, config.json implies {shape:?}"),
            });
        }
        Ok(values)
    }

    fn entry(&self, name: &str) -> Result<&Entry, ImportError> {
        self.tensors.get(name).ok_or_else(|| ImportError::Tensor {
            name: name.into(),
            message: "is missing from the checkpoint".into(),
        })
    }
}

fn read_header(file: &Path) -> Result<Vec<(String, Entry)>, ImportError> {
    let bad = |message: String| ImportError::File {
        path: file.to_path_buf(),
        message,
    };
    let mut f = File::open(file).map_err(ImportError::io(file))?;
    let size = f.metadata().map_err(ImportError::io(file))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(ImportError::io(file))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || 8 + n > size {
        return Err(bad(format!("not a safetensors file (header length {n})")));
    }
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
        let dtype = field("dtype")?.as_str().unwrap_or_default().to_string();
        let shape: Vec<usize> = serde_json::from_value(field("shape")?)
            .map_err(|e| bad(format!("tensor {name}: shape: {e}")))?;
        let offsets: [u64; 2] = serde_json::from_value(field("data_offsets")?)
            .map_err(|e| bad(format!("tensor {name}: data_offsets: {e}")))?;
        let start = 8 + n + offsets[0];
        let end = 8 + n + offsets[1];
        if offsets[1] < offsets[0] || end > size {
            return Err(bad(format!("tensor {name} lies outside the file")));
        }
        out.push((
            name,
            Entry {
                file: file.to_path_buf(),
                dtype,
                shape,
                start,
                len: end - start,
            },
        ));
    }
    Ok(out)
}
