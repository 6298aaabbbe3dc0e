//! Training at run time (libtorch): features in, heads out.
use std::path::PathBuf;

use super::{TrainReport, TrainSettings};
use crate::formats::features::read_features;
use crate::model::{HeadsWeights, LoadedModel};
use crate::pipeline::PipelineError;
use crate::train::{torch_device, Recipe, StepReport, TrainConfig, Trainer};

/// Trains on `features` and writes the model to `output`; `progress` sees every step.
pub fn run_train(
    features: &[PathBuf],
    output: &std::path::Path,
    a: &TrainSettings,
    mut progress: impl FnMut(&StepReport),
) -> Result<TrainReport, PipelineError> {
    let mut problems = crate::limits::Problems::default();
    a.problems(&mut problems);
    problems.first()?;
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
        total_steps: a.epochs * labelled.div_ceil(a.batch_size.max(1)) as u64,
        batch_size: a.batch_size,
        p_learn: a.p_learn,
        seed: a.seed,
        ..a.trainer.config(Recipe::OFFLINE)
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
