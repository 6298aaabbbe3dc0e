//! Training hyper-parameters (ACTPRM.md, "Training"): the settings users give (one
//! [`TrainerSettings`] for every command that trains, completed by its [`Recipe`]) and the
//! [`TrainConfig`] the trainer runs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Weight of the anchor term `mean((phi - phi_anchor)^2)`.
    pub lambda: f64,
    /// Peak learning rate (heads alone take a larger rate than full fine-tuning's 1e-5).
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up steps, then linear decay to 0 at `total_steps`.
    pub warmup_steps: u64,
    /// Schedule length; 0 = constant rate after warm-up (the streaming loop's unknown length).
    pub total_steps: u64,
    /// Trajectories per optimiser step.
    pub batch_size: usize,
    pub max_grad_norm: f64,
    /// Bagging: each (head, trajectory) pair is used with this probability (1 = off).
    pub p_learn: f64,
    pub seed: u64,
    /// Weight of the loss on wrong steps (about 13 % of labelled steps are wrong).
    pub pos_weight_wrong: f64,
    /// libtorch intra-op threads. The head matrices are small: one thread avoids spin-waiting
    /// thread pools that fight the scorer for cores.
    pub threads: usize,
}

impl Default for TrainConfig {
    /// The offline recipe with every shared setting at its declared default.
    fn default() -> Self {
        TrainerSettings::default().config(Recipe::OFFLINE)
    }
}

crate::settings! {
    /// The optimiser settings of every command that trains heads (`active`, `train`, `finetune`,
    /// `experiment`; in a pipeline file the `train`, `fit`, `finetune` and `experiment`
    /// stages): declared once here and flattened into each command's settings.
    #[derive(
        Debug, Clone, Copy, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
    )]
    #[serde(default)]
    pub struct TrainerSettings {
        /// Peak learning rate of the heads [default: the command's recipe: 2e-3 streaming
        /// (active, experiment), 1e-3 offline (train), 1e-3 fine-tuning (finetune)].
        #[arg(long)]
        pub lr: Option<f64>,
        /// Linear warm-up steps, then linear decay [default: the command's recipe: 10 streaming
        /// (active, experiment), 50 offline (train), 20 fine-tuning (finetune)].
        #[arg(long)]
        pub warmup: Option<u64>,
        /// Anchor weight lambda.
        #[arg(long)]
        pub lambda: f64 = 0.5,
        /// AdamW weight decay.
        #[arg(long)]
        pub weight_decay: f64 = 0.01,
        /// Loss weight of wrong steps relative to correct ones.
        #[arg(long)]
        pub wrong_weight: f64 = 1.0,
    }
}

/// Optimiser steps between two hand-overs of the trainer's heads to the scorer, by default, in
/// the streaming loop (`active --export-every`) and the experiment that measures it.
pub const EXPORT_EVERY: u64 = 5;

/// The settings that differ by how a command trains: a step per streamed batch takes a larger
/// rate and a short warm-up; epochs over a stored pool, a smaller rate and a longer warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub lr: f64,
    pub warmup: u64,
}

impl Recipe {
    /// One step per streamed batch (`active`, `experiment`).
    pub const STREAMING: Self = Self {
        lr: 2e-3,
        warmup: 10,
    };
    /// Epochs over stored features (`train`; the embedded model's recipe).
    pub const OFFLINE: Self = Self {
        lr: 1e-3,
        warmup: 50,
    };
    /// The heads beside the encoder's top layers (`finetune`).
    pub const FINETUNE: Self = Self {
        lr: 1e-3,
        warmup: 20,
    };
}

impl TrainerSettings {
    /// The trainer's configuration: these settings, the recipe where they leave a value to it,
    /// and the fixed rest (batch 64, gradient clip 1, no bagging, seed 0, one thread).
    pub fn config(&self, recipe: Recipe) -> TrainConfig {
        TrainConfig {
            lambda: self.lambda,
            lr: self.lr.unwrap_or(recipe.lr),
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup.unwrap_or(recipe.warmup),
            total_steps: 0,
            batch_size: 64,
            max_grad_norm: 1.0,
            p_learn: 1.0,
            seed: 0,
            pos_weight_wrong: self.wrong_weight,
            threads: 1,
        }
    }

    /// Range rules, for flags and pipeline-file keys alike (the built configuration is checked
    /// again by [`TrainConfig::validate`]).
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::{non_negative, positive};
        if let Some(lr) = self.lr {
            problems.check(positive("lr", lr));
        }
        problems.check(non_negative("lambda", self.lambda));
        problems.check(non_negative("weight_decay", self.weight_decay));
        problems.check(positive("wrong_weight", self.wrong_weight));
    }
}

impl TrainConfig {
    /// Range checks (shared by `actprm train`, the active loop, experiments and pipeline files).
    pub fn validate(&self) -> Result<(), crate::limits::SettingError> {
        use crate::limits::{at_least, fraction, non_negative, positive};
        positive("lr", self.lr)?;
        non_negative("lambda", self.lambda)?;
        non_negative("weight_decay", self.weight_decay)?;
        at_least("batch_size", self.batch_size, 1)?;
        positive("max_grad_norm", self.max_grad_norm)?;
        fraction("p_learn", self.p_learn, true)?;
        positive("wrong_weight", self.pos_weight_wrong)?;
        Ok(())
    }
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub step: u64,
    pub loss: f64,
    pub bce: f64,
    pub anchor: f64,
    pub grad_norm: f64,
    pub trajectories: usize,
    pub labelled_steps: usize,
}

impl StepReport {
    /// A progress line for every 50th step of offline training.
    pub fn progress_line(&self) -> Option<String> {
        self.step.is_multiple_of(50).then(|| {
            format!(
                "step {:>6}  loss {:.4}  bce {:.4}  anchor {:.2e}  |g| {:.3}",
                self.step, self.loss, self.bce, self.anchor, self.grad_norm
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    /// The help states the recipes' numbers, which live in `Recipe`: they must agree.
    #[test]
    fn the_flag_help_states_each_recipe() {
        let command = TrainerSettings::augment_args(clap::Command::new("train"));
        let help = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        let (lr, warmup) = (help("lr"), help("warmup"));
        for (recipe, name) in [
            (Recipe::STREAMING, "streaming"),
            (Recipe::OFFLINE, "offline"),
            (Recipe::FINETUNE, "fine-tuning"),
        ] {
            let stated = format!("{:e} {name}", recipe.lr);
            assert!(lr.contains(&stated), "{lr:?} does not say {stated:?}");
            let stated = format!("{} {name}", recipe.warmup);
            assert!(
                warmup.contains(&stated),
                "{warmup:?} does not say {stated:?}"
            );
        }
    }
}
