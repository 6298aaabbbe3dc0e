//! The trainer stage (libtorch via `tch`): ActPRM's anchored ensemble loss on stored step
//! features, AdamW with warm-up and linear decay, exact checkpoints, and export back into the
//! heads ONNX graph the scorer loads.
//!
//! libtorch is the cargo feature `train` (on for the command line): a build without it (the
//! Python scoring module) keeps the settings and refuses to train with [`TrainError::NotBuilt`].

#[cfg(feature = "train")]
pub mod algorithm;
pub mod batch;
#[cfg(feature = "train")]
pub mod checkpoint;
pub mod config;
#[cfg(feature = "train")]
pub mod encoder;
#[cfg(feature = "train")]
pub mod finetune;
#[cfg(feature = "train")]
pub mod heads;
#[cfg(feature = "train")]
pub mod loss;
#[cfg(feature = "train")]
pub mod optim;
#[cfg(feature = "train")]
pub mod trainer;

pub use batch::LabelledBatch;
pub use config::{Recipe, StepReport, TrainConfig, TrainerSettings, EXPORT_EVERY};
#[cfg(feature = "train")]
pub use finetune::{Finetuner, TokenisedExample};
#[cfg(feature = "train")]
pub use heads::TchHeads;
#[cfg(feature = "train")]
pub use trainer::Trainer;

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
    /// This build has no libtorch (cargo feature `train` off): names the command refused.
    #[error(
        "`{0}` trains, and this build of actprm has no trainer: it was built without the cargo \
         feature `train` (on in a plain `cargo build` of the command line; off in the Python module)"
    )]
    NotBuilt(&'static str),
}

#[cfg(feature = "train")]
impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

/// libtorch's CUDA half. tch links it with `--as-needed`, which drops it since no symbol of it is
/// used directly (tch-rs #980), so libtorch would report no CUDA on a CUDA machine. It is loaded
/// by path, with its symbols global so it registers its kernels with the loaded libtorch, after
/// the NVIDIA driver (whose absence is said as such). Once per process.
#[cfg(feature = "train")]
fn load_libtorch_cuda() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            crate::model::execution::cuda_driver()?;
            let lib = crate::model::deps_dir().join("torch/torch/lib/libtorch_cuda.so");
            if !lib.exists() {
                return Err(format!(
                    "{} is missing: this libtorch is the CPU setup's (setup.sh keeps only its CPU \
                     half); ACTPRM_GPU=1 ./setup.sh installs its CUDA half and the libraries that \
                     needs, or train with --device cpu",
                    lib.display()
                ));
            }
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading libtorch_cuda runs its initialisers, as linking it would have; the
            // library stays loaded for the process (its kernels are registered globally).
            unsafe { Library::open(Some(&lib), RTLD_NOW | RTLD_GLOBAL) }
                .map(std::mem::forget)
                .map_err(|e| {
                    format!(
                        "{} did not load: {}",
                        lib.display(),
                        crate::model::execution::dlopen_reason(&e)
                    )
                })
        })
        .clone()
}

#[cfg(feature = "train")]
/// `cpu`, `cuda` or `cuda:N` as a libtorch device; CUDA must really be there.
pub fn torch_device(spec: crate::model::Device) -> Result<tch::Device, TrainError> {
    match spec {
        crate::model::Device::Cpu => Ok(tch::Device::Cpu),
        crate::model::Device::Cuda(id) => {
            load_libtorch_cuda().map_err(|why| TrainError::Device(format!("cuda:{id}"), why))?;
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
