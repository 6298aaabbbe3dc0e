//! `actprm finetune`: train the backbone's top layers together with the heads on labelled
//! trajectories, choose tau on held-out ones, and export a model directory whose backbone actprm
//! builds from the fine-tuned fp32 weights. Needs a backbone actprm writes itself (the default).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Device;
use crate::train::{StepReport, TrainerSettings};

#[cfg(feature = "train")]
mod run;
#[cfg(feature = "train")]
pub use run::run_finetune;

crate::settings! {
    /// The fine-tuning recipe: `actprm finetune`'s flags and a pipeline file's `finetune` keys.
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(default)]
    pub struct FinetuneSettings {
        /// Start from this model directory (default: the embedded default model); its backbone
        /// must be one actprm writes from fp32 weights.
        #[arg(long)]
        pub model: Option<PathBuf>,
        /// Encoder layers that learn, counted from the top (6 for MiniLM: every layer and the
        /// embeddings; 0: the heads alone, on the same data and steps, as a control).
        #[arg(long)]
        pub backbone_layers: usize = 2,
        /// Peak learning rate of the encoder.
        #[arg(long)]
        pub backbone_lr: f64 = 5e-5,
        /// The heads' optimiser (the fine-tuning recipe: lr 1e-3, warm-up 20).
        #[command(flatten)]
        #[serde(flatten)]
        pub trainer: TrainerSettings,
        #[arg(long)]
        pub epochs: u64 = 1,
        /// Trajectories per optimiser step.
        #[arg(long)]
        pub batch_size: usize = 8,
        /// Train on at most this many trajectories (a seeded sample), to bound the time on a CPU.
        #[arg(long)]
        pub max_trajectories: Option<usize>,
        /// Hold out every N-th labelled trajectory from training and choose tau on them.
        #[arg(long)]
        pub tau_holdout_every: Option<usize>,
        #[arg(long)]
        pub seed: u64 = 0,
        /// Save a checkpoint every N optimiser steps (beside the output, as OUTPUT.checkpoint),
        /// so an interrupted run continues with --resume; 0: never.
        #[arg(long)]
        pub checkpoint_every: u64 = 20,
        /// Continue the interrupted run whose checkpoint is beside the output (same inputs and
        /// settings).
        #[arg(long)]
        pub resume: bool,
        /// Start again although an interrupted run's checkpoint is beside the output (it is
        /// removed), and write the model into a folder that is not a model directory actprm
        /// wrote (its other files are kept).
        #[arg(long, conflicts_with = "resume")]
        pub overwrite: bool,
        /// Stop after this many optimiser steps in total, with a checkpoint (continue with
        /// --resume).
        #[arg(long)]
        pub stop_after: Option<u64>,
        /// libtorch threads.
        #[arg(long)]
        pub threads: usize = 2,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        pub device: Device = Device::Cpu,
    }
}

impl FinetuneSettings {
    /// Range rules, for flags and pipeline-file keys alike.
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::{at_least, positive};
        self.trainer.problems(problems);
        problems.check(positive("backbone_lr", self.backbone_lr));
        problems.check(at_least("epochs", self.epochs, 1));
        problems.check(at_least("batch_size", self.batch_size, 1));
        problems.check(at_least("threads", self.threads, 1));
        // what the flags' parser refuses, refused for pipeline-file keys too
        if self.resume && self.overwrite {
            problems.check(Err(crate::limits::refuse(
                "overwrite",
                "starts again, resume continues: give one".into(),
            )));
        }
    }
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

impl FinetuneProgress<'_> {
    /// A progress line for every 10th step and the last.
    pub fn line(&self) -> Option<String> {
        let r = self.report;
        (r.step.is_multiple_of(10) || r.step == self.total_steps).then(|| {
            format!(
                "step {:>5}/{}  loss {:.4}  bce {:.4}  |g| {:.3}  {:.0} tokens/s",
                r.step, self.total_steps, r.loss, r.bce, r.grad_norm, self.tokens_per_s
            )
        })
    }
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
