//! Checkpoints: heads, anchors, AdamW moments and the step counter in libtorch's own format
//! (`checkpoint.ot`) plus the configuration (`checkpoint.json`). Resuming from one continues
//! training exactly where it stopped.

use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::config::TrainConfig;
use super::TrainError;

pub const CHECKPOINT_TENSORS: &str = "checkpoint.ot";
pub const CHECKPOINT_META: &str = "checkpoint.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub step: u64,
    pub heads: usize,
    pub dim: usize,
    pub config: TrainConfig,
}

/// Serialises named tensors to bytes (so they can join an atomic model-directory write).
pub fn tensors_to_bytes(named: &[(String, &Tensor)]) -> Result<Vec<u8>, TrainError> {
    let mut buf = Cursor::new(Vec::new());
    Tensor::save_multi_to_stream(named, &mut buf)?;
    Ok(buf.into_inner())
}

pub fn read(
    dir: &Path,
    device: tch::Device,
) -> Result<(CheckpointMeta, Vec<(String, Tensor)>), TrainError> {
    let meta_path = dir.join(CHECKPOINT_META);
    let err = |path: &Path, message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(&meta_path)
        .map_err(|e| err(&meta_path, format!("cannot read: {e}")))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| err(&meta_path, format!("not a checkpoint: {e}")))?;
    let tensor_path = dir.join(CHECKPOINT_TENSORS);
    let tensors = Tensor::load_multi_with_device(&tensor_path, device)
        .map_err(|e| err(&tensor_path, format!("unreadable: {e}")))?;
    Ok((meta, tensors))
}
