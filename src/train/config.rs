//! Training hyper-parameters (ACTPRM.md, "Training"), shared by `actprm train`, the active loop
//! and pipeline files.

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
    fn default() -> Self {
        Self {
            lambda: 0.5,
            lr: 1e-3,
            weight_decay: 0.01,
            warmup_steps: 50,
            total_steps: 0,
            batch_size: 64,
            max_grad_norm: 1.0,
            p_learn: 1.0,
            seed: 0,
            pos_weight_wrong: 1.0,
            threads: 1,
        }
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
