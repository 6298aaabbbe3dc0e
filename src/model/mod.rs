//! The PRM model: a directory with a manifest, a frozen backbone ONNX, a tokenizer and the heads
//! ONNX graph, run by ONNX Runtime.

pub mod backbone;
pub mod create;
pub mod ensemble;
pub mod execution;
pub mod heads;
pub mod import;
pub mod manifest;
pub mod onnx;
pub mod options;
pub mod tiny;

pub use backbone::Backbone;
pub use ensemble::HeadsRunner;
pub use execution::{Device, RuntimeOptions};
pub use heads::HeadsWeights;
pub use manifest::{CheckRule, LoadedModel, Manifest};
pub use options::ModelOptions;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("model manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "ONNX Runtime library not found at {path}.\n  Run ./setup.sh (installs it from the PyPI onnxruntime wheel into .deps/ort), \
         or point ORT_DYLIB_PATH at a libonnxruntime.so of version 1.31 or 1.32."
    )]
    RuntimeMissing { path: PathBuf },
    #[error("ONNX Runtime: {context}: {message}")]
    Ort { context: String, message: String },
    #[error("heads: {0}")]
    Heads(String),
    #[error("backbone {path}: {message}")]
    Contract { path: PathBuf, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
}

impl ModelError {
    pub(crate) fn ort(context: impl Into<String>) -> impl FnOnce(ort::Error<()>) -> ModelError {
        let context = context.into();
        move |e| ModelError::Ort {
            context,
            message: e.to_string(),
        }
    }
}

/// The output-folder rule for a model directory (`sink::output_folder`), checked before a
/// command works: `dir` is missing, empty, or a model directory actprm wrote, unless
/// `overwrite` (the model is then written beside the files there, which are kept).
pub fn check_output(dir: &std::path::Path, overwrite: bool) -> Result<(), ModelError> {
    crate::sink::output_folder::check_model_dir(dir, overwrite, manifest::is_model_dir).map_err(
        |e| match e {
            crate::sink::SinkError::Write { path, message } => ModelError::File { path, message },
            other => ModelError::File {
                path: dir.to_path_buf(),
                message: other.to_string(),
            },
        },
    )
}

/// Where `setup.sh` put the native parts: `$ACTPRM_DEPS`, else the checkout this binary was built
/// from, else `~/.cache/actprm`.
pub fn deps_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ACTPRM_DEPS") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = option_env!("ACTPRM_DEPS") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/actprm")
}
