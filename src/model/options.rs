//! Which model runs where: the `--model`, `--device` and `--threads` flags, and a `models:` entry
//! of a pipeline file (where the directory is called `path`). One type serves both.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Device, LoadedModel, ModelError, RuntimeOptions};

crate::settings! {
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, JsonSchema)]
    #[serde(default)]
    pub struct ModelOptions {
        /// Model directory (manifest.json + files); default: the embedded default model.
        #[arg(long)]
        #[serde(rename = "path")]
        pub model: Option<PathBuf>,
        /// cpu, cuda or cuda:N (CUDA fails loudly if its provider cannot start).
        #[arg(long)]
        pub device: Device = Device::Cpu,
        /// ONNX Runtime intra-op threads (0 = one per core).
        #[arg(long)]
        pub threads: usize = 0,
    }
}

impl ModelOptions {
    pub fn runtime(&self) -> RuntimeOptions {
        RuntimeOptions {
            device: self.device,
            intra_threads: self.threads,
        }
    }

    /// The model directory, or the embedded default.
    pub fn open(&self) -> Result<LoadedModel, ModelError> {
        LoadedModel::open(self.model.as_deref())
    }
}
