//! `actprm train`: fit the ensemble heads offline on stored step features, optionally choose tau on
//! held-out or development features, and export a model directory.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Device;
use crate::train::{TrainConfig, TrainerSettings};

#[cfg(feature = "train")]
mod run;
#[cfg(feature = "train")]
pub use run::run_train;

crate::settings! {
    /// The offline training recipe: `actprm train`'s flags and a pipeline file's `fit` keys.
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(default)]
    pub struct TrainSettings {
        /// Start from this model directory's heads (default: the embedded default model).
        #[arg(long)]
        pub model: Option<PathBuf>,
        /// Re-initialise E heads (ActPRM init with --seed) instead of starting from the model's.
        #[arg(long)]
        pub heads: Option<usize>,
        /// Continue from the checkpoint in this model directory.
        #[arg(long, conflicts_with_all = ["heads", "model"])]
        pub resume: Option<PathBuf>,
        /// Write the model into an output folder that is not a model directory actprm wrote (its
        /// other files are kept; without this such a folder is refused).
        #[arg(long)]
        pub overwrite: bool,
        #[arg(long)]
        pub epochs: u64 = 5,
        /// Stop after this many optimiser steps in total (checkpoint and continue later with
        /// --resume).
        #[arg(long)]
        pub stop_after: Option<u64>,
        /// The optimiser (the offline recipe: lr 1e-3, warm-up 50).
        #[command(flatten)]
        #[serde(flatten)]
        pub trainer: TrainerSettings,
        /// Trajectories per optimiser step.
        #[arg(long)]
        pub batch_size: usize = TrainConfig::default().batch_size,
        /// Bagging probability per (head, trajectory).
        #[arg(long)]
        pub p_learn: f64 = TrainConfig::default().p_learn,
        #[arg(long)]
        pub seed: u64 = 0,
        /// Choose tau on these development features and store it in the manifest.
        #[arg(long, conflicts_with = "tau_holdout_every")]
        pub tau_from: Option<PathBuf>,
        /// Hold out every N-th labelled trajectory from training and choose tau on them.
        #[arg(long)]
        pub tau_holdout_every: Option<usize>,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        pub device: Device = Device::Cpu,
    }
}

impl TrainSettings {
    /// Range rules, for flags and pipeline-file keys alike.
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::{at_least, fraction, refuse};
        self.trainer.problems(problems);
        problems.check(at_least("epochs", self.epochs, 1));
        problems.check(at_least("batch_size", self.batch_size, 1));
        problems.check(fraction("p_learn", self.p_learn, true));
        // what the flags' parser refuses, refused for pipeline-file keys too
        if self.resume.is_some() && (self.heads.is_some() || self.model.is_some()) {
            problems.check(Err(refuse(
                "resume",
                "continues the checkpoint's own heads: give neither heads nor model with it".into(),
            )));
        }
        if self.tau_from.is_some() && self.tau_holdout_every.is_some() {
            problems.check(Err(refuse(
                "tau_from",
                "and tau_holdout_every both choose tau: give one".into(),
            )));
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub steps: u64,
    pub labelled: usize,
    pub trajectories_per_s: f64,
    pub final_loss: Option<f64>,
    /// The threshold chosen, and on what.
    pub tau: Option<(f32, String)>,
    pub output: PathBuf,
    pub version: String,
}

#[cfg(not(feature = "train"))]
pub fn run_train(
    _features: &[PathBuf],
    _output: &std::path::Path,
    _a: &TrainSettings,
    _progress: impl FnMut(&crate::train::StepReport),
) -> Result<TrainReport, super::PipelineError> {
    Err(crate::train::TrainError::NotBuilt("train").into())
}

impl crate::report::Report for TrainReport {
    fn table(&self) -> String {
        let mut out = format!(
            "trained {} steps ({} labelled trajectories, {:.0} trajectories/s), final loss {:.4}\n",
            self.steps,
            self.labelled,
            self.trajectories_per_s,
            self.final_loss.unwrap_or(f64::NAN)
        );
        if let Some((tau, source)) = &self.tau {
            out += &format!("tau {tau:.2} chosen on {source}\n");
        }
        out += &format!("wrote {} ({})\n", self.output.display(), self.version);
        out
    }
}
