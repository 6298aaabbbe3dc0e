//! The trainer stage (libtorch via `tch`): ActPRM's anchored ensemble loss on stored step
//! features, AdamW with warm-up and linear decay, exact checkpoints, and export back into the
//! heads ONNX graph the scorer loads.

pub mod algorithm;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod encoder;
pub mod finetune;
pub mod heads;
pub mod loss;
pub mod optim;
pub mod trainer;

pub use batch::LabelledBatch;
pub use config::TrainConfig;
pub use finetune::{Finetuner, TokenisedExample};
pub use heads::TchHeads;
pub use trainer::{StepReport, Trainer};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("features {path}: {message}")]
    Features { path: PathBuf, message: String },
    #[error("labels: {0}")]
    Labels(String),
    #[error("feature dimension {got} does not match the heads' {expected}{where_}")]
    Dimension {
        got: usize,
        expected: usize,
        where_: String,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("device {0}: {1}")]
    Device(String, String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

/// `cpu`, `cuda` or `cuda:N` as a libtorch device; CUDA must really be there.
pub fn torch_device(spec: crate::model::Device) -> Result<tch::Device, TrainError> {
    match spec {
        crate::model::Device::Cpu => Ok(tch::Device::Cpu),
        crate::model::Device::Cuda(id) => {
            if !tch::Cuda::is_available() {
                return Err(TrainError::Device(
                    format!("cuda:{id}"),
                    "libtorch reports no CUDA device; install the CUDA torch wheel with ACTPRM_GPU=1 ./setup.sh \
                     (see README, 'GPU') or train with --device cpu"
                        .into(),
                ));
            }
            Ok(tch::Device::Cuda(id as usize))
        }
    }
}
