//! `actprm train`: fit the ensemble heads offline on stored step features, optionally choose tau on
//! held-out or development features, and export a model directory.

use std::path::PathBuf;

use serde::Serialize;

use super::PipelineError;
use crate::formats::features::read_features;
use crate::model::{Device, HeadsWeights, LoadedModel};
use crate::train::{torch_device, StepReport, TrainConfig, Trainer};

/// The offline training recipe: `actprm train`'s flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct TrainSettings {
    /// Start from this model's heads (default: the embedded default model).
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
    #[arg(long, default_value_t = 5)]
    pub epochs: u64,
    /// Stop after this many optimiser steps in total (checkpoint and continue later with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Anchor weight lambda.
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 50)]
    pub warmup: u64,
    /// Bagging probability per (head, trajectory).
    #[arg(long, default_value_t = 1.0)]
    pub p_learn: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Loss weight of wrong steps relative to correct ones.
    #[arg(long, default_value_t = 1.0)]
    pub wrong_weight: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Choose tau on these development features and store it in the manifest.
    #[arg(long, conflicts_with = "tau_holdout_every")]
    pub tau_from: Option<PathBuf>,
    /// Hold out every N-th labelled trajectory from training and choose tau on them.
    #[arg(long)]
    pub tau_holdout_every: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value_t = Device::Cpu)]
    pub device: Device,
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

/// Trains on `features` and writes the model to `output`; `progress` sees every step.
pub fn run_train(
    features: &[PathBuf],
    output: &std::path::Path,
    a: &TrainSettings,
    mut progress: impl FnMut(&StepReport),
) -> Result<TrainReport, PipelineError> {
    crate::limits::at_least("epochs", a.epochs, 1)?;
    crate::model::check_output(output, a.overwrite)?;
    let device = torch_device(a.device)?;
    let mut rows = Vec::new();
    let mut dim = None;
    for path in features {
        let (d, r) = read_features(path)?;
        if let Some(prev) = dim.filter(|&p| p != d) {
            return Err(PipelineError::FeatureDimension {
                path: path.clone(),
                found: d,
                expected: prev,
                against: "earlier files",
            });
        }
        dim = Some(d);
        rows.extend(r);
    }
    let mut holdout = Vec::new();
    if let Some(every) = a.tau_holdout_every.filter(|&n| n >= 2) {
        let (kept, held): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % every != 0);
        holdout = held.into_iter().map(|(_, r)| r).collect();
        rows = kept.into_iter().map(|(_, r)| r).collect();
    }
    let labelled = rows.iter().filter(|r| r.label.is_some()).count();
    let base = match (&a.resume, &a.model) {
        (Some(dir), _) | (None, Some(dir)) => LoadedModel::from_dir(dir)?,
        (None, None) => LoadedModel::embedded()?,
    };
    let config = TrainConfig {
        lambda: a.lambda,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_steps: a.warmup,
        total_steps: a.epochs * labelled.div_ceil(a.batch_size.max(1)) as u64,
        batch_size: a.batch_size,
        max_grad_norm: 1.0,
        p_learn: a.p_learn,
        seed: a.seed,
        pos_weight_wrong: a.wrong_weight,
        threads: 1,
    };
    let mut trainer = match (&a.resume, a.heads) {
        (Some(dir), _) => Trainer::resume(dir, device)?,
        (None, Some(e)) => {
            let w = HeadsWeights::init(e, base.manifest.hidden_size, a.seed);
            Trainer::new(&w, &w, config, device)?
        }
        (None, None) => Trainer::from_model(&base, config, device)?,
    };
    if let Some(d) = dim.filter(|&d| d != trainer.heads.dim) {
        return Err(PipelineError::FeatureDimension {
            path: features[0].clone(),
            found: d,
            expected: trainer.heads.dim,
            against: "the heads take",
        });
    }
    let started = std::time::Instant::now();
    let first = trainer.step();
    let mut last = None;
    trainer.fit(&rows, a.epochs, a.stop_after, |r| {
        progress(r);
        last = Some(*r);
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let steps = trainer.step() - first;
    let tau_rows = match &a.tau_from {
        Some(dev) => Some((read_features(dev)?.1, dev.display().to_string())),
        None if !holdout.is_empty() => Some((
            holdout,
            format!(
                "every {}-th training trajectory, held out",
                a.tau_holdout_every.unwrap_or_default()
            ),
        )),
        None => None,
    };
    let tau = match tau_rows {
        Some((dev_rows, source)) => {
            let features: Vec<f32> = dev_rows
                .iter()
                .flat_map(|r| r.features.iter().copied())
                .collect();
            let probs = trainer.probabilities(&features)?;
            let samples = crate::eval::model::samples_from_probs(
                &dev_rows,
                &probs,
                trainer.heads.heads,
                crate::score::check::CheckRule::Off,
            );
            Some((crate::eval::choose_tau(&samples), source))
        }
        None => None,
    };
    let version = trainer.export(&base, output, tau.as_ref().map(|t| t.0))?;
    Ok(TrainReport {
        steps,
        labelled,
        trajectories_per_s: (steps as f64 * a.batch_size as f64)
            .min(labelled as f64 * a.epochs as f64)
            / seconds.max(1e-9),
        final_loss: last.map(|r| r.loss),
        tau,
        output: output.to_path_buf(),
        version,
    })
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
