//! `actprm finetune`: train the backbone's top layers together with the heads on labelled
//! trajectories, choose tau on held-out ones, and export a model directory whose backbone actprm
//! builds from the fine-tuned fp32 weights. Needs a backbone actprm writes itself (the default).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Device;
use crate::train::StepReport;

#[cfg(feature = "train")]
mod run;
#[cfg(feature = "train")]
pub use run::run_finetune;

/// The fine-tuning recipe: `actprm finetune`'s flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct FinetuneSettings {
    /// Start from this model (default: the embedded default model); its backbone must be one
    /// actprm writes from fp32 weights.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Encoder layers that learn, counted from the top (6 for MiniLM: every layer and the
    /// embeddings; 0: the heads alone, on the same data and steps, as a control).
    #[arg(long, default_value_t = 2)]
    pub backbone_layers: usize,
    /// Peak learning rate of the encoder.
    #[arg(long, default_value_t = 5e-5)]
    pub backbone_lr: f64,
    /// Peak learning rate of the heads.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1)]
    pub epochs: u64,
    /// Trajectories per optimiser step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Anchor weight lambda (heads).
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
    #[arg(long, default_value_t = 20)]
    pub warmup: u64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Loss weight of wrong steps relative to correct ones.
    #[arg(long, default_value_t = 1.0)]
    pub wrong_weight: f64,
    /// Train on at most this many trajectories (a seeded sample), to bound the time on a CPU.
    #[arg(long)]
    pub max_trajectories: Option<usize>,
    /// Hold out every N-th labelled trajectory from training and choose tau on them.
    #[arg(long)]
    pub tau_holdout_every: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save a checkpoint every N optimiser steps (beside the output, as OUTPUT.checkpoint), so an
    /// interrupted run continues with --resume; 0: never.
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: u64,
    /// Continue the interrupted run whose checkpoint is beside the output (same inputs and
    /// settings).
    #[arg(long)]
    pub resume: bool,
    /// Start again although an interrupted run's checkpoint is beside the output (it is
    /// removed), and write the model into a folder that is not a model directory actprm wrote
    /// (its other files are kept).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Stop after this many optimiser steps in total, with a checkpoint (continue with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// libtorch threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value_t = Device::Cpu)]
    pub device: Device,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    pub steps: u64,
    /// Stopped early (`--stop-after`): the checkpoint is written, no model yet.
    pub stopped: bool,
    pub checkpoint: PathBuf,
    pub trajectories: usize,
    pub held_out: usize,
    pub tokens_per_s: f64,
    pub final_loss: Option<f64>,
    pub tau: Option<f32>,
    pub output: PathBuf,
    pub version: String,
}

/// Progress of a fine-tuning run, one per optimiser step.
pub struct FinetuneProgress<'a> {
    pub report: &'a StepReport,
    pub total_steps: u64,
    pub tokens_per_s: f64,
}

#[cfg(not(feature = "train"))]
pub fn run_finetune(
    _files: &[PathBuf],
    _output: &Path,
    _a: &FinetuneSettings,
    _progress: impl FnMut(&FinetuneProgress),
) -> Result<FinetuneReport, super::PipelineError> {
    Err(crate::train::TrainError::NotBuilt("finetune").into())
}

/// The checkpoint of a fine-tuning run writing `output`: a folder beside it.
pub fn checkpoint_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint");
    output.with_file_name(name)
}

impl crate::report::Report for FinetuneReport {
    fn table(&self) -> String {
        if self.stopped {
            return format!(
                "stopped after {} steps as asked; checkpoint in {} (continue with --resume)\n",
                self.steps,
                self.checkpoint.display()
            );
        }
        let mut out = format!(
            "fine-tuned {} steps on {} labelled trajectories ({:.0} tokens/s), final loss {:.4}\n",
            self.steps,
            self.trajectories,
            self.tokens_per_s,
            self.final_loss.unwrap_or(f64::NAN)
        );
        if let Some(tau) = self.tau {
            out += &format!(
                "tau {tau:.2} chosen on {} held-out trajectories\n",
                self.held_out
            );
        }
        out += &format!("wrote {} ({})\n", self.output.display(), self.version);
        out
    }
}
