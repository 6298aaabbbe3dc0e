//! The strategies run: each (strategy, seed) trains heads on the stream it selects (libtorch).
use std::collections::{BTreeMap, HashSet};

use super::{Curve, CurvePoint, ExperimentConfig, ExperimentReport};
use crate::eval::model::samples_from_probs;
use crate::eval::{choose_tau, processbench, Sample};
use crate::formats::features::FeatureRow;
use crate::label::{LabelRequest, PoolLabeller};
use crate::model::HeadsWeights;
use crate::rng::NormalRng;
use crate::score::check::CheckRule;
use crate::select::{decide, step_stats, trajectory_embedding, Candidates, RateQuota, Strategy};
use crate::train::algorithm::{export_due, label_and_train, retrain};
use crate::train::{TrainConfig, TrainError, Trainer};

fn flat(rows: &[&FeatureRow]) -> Vec<f32> {
    rows.iter()
        .flat_map(|r| r.features.iter().copied())
        .collect()
}

/// A copy of the trainer's current heads that scores the stream until the next export.
fn snapshot(trainer: &Trainer) -> Result<Trainer, TrainError> {
    let w = trainer.heads.weights()?;
    Trainer::new(&w, &w, TrainConfig::default(), tch::Device::Cpu)
}

fn samples(trainer: &Trainer, rows: &[FeatureRow]) -> Result<Vec<Sample>, TrainError> {
    let refs: Vec<&FeatureRow> = rows.iter().collect();
    let probs = trainer.probabilities(&flat(&refs))?;
    // the heads alone: the check's verdicts do not depend on which rows were labelled
    Ok(samples_from_probs(
        rows,
        &probs,
        trainer.heads.heads,
        CheckRule::Off,
    ))
}

fn evaluate(
    trainer: &Trainer,
    holdout: &[FeatureRow],
    dev: &[(String, Vec<FeatureRow>)],
    labels: usize,
    seen: usize,
) -> Result<CurvePoint, TrainError> {
    let tau = choose_tau(&samples(trainer, holdout)?);
    let mut subsets = BTreeMap::new();
    let mut acc_error = BTreeMap::new();
    for (name, rows) in dev {
        let score = processbench(&samples(trainer, rows)?, tau);
        subsets.insert(name.clone(), score.f1);
        acc_error.insert(name.clone(), score.acc_error);
    }
    let f1s: Vec<f64> = subsets.values().flatten().copied().collect();
    let mean_f1 = if f1s.is_empty() {
        0.0
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    };
    Ok(CurvePoint {
        labels,
        seen,
        steps: trainer.step(),
        tau,
        mean_f1,
        subsets,
        acc_error,
    })
}

/// Runs every strategy with every seed. `pool` rows must carry labels (pool mode).
pub fn run_experiment(
    pool: &[FeatureRow],
    dev: &[(String, Vec<FeatureRow>)],
    cfg: &ExperimentConfig,
    mut progress: impl FnMut(&Curve),
) -> Result<ExperimentReport, TrainError> {
    cfg.validate()?;
    let dim = pool
        .first()
        .map(|r| r.features.len() / r.steps.max(1))
        .ok_or_else(|| TrainError::Labels("the pool is empty".into()))?;
    let every = cfg.holdout_every.max(2);
    let holdout: Vec<FeatureRow> = pool
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(_, r)| r.clone())
        .collect();
    let stream: Vec<&FeatureRow> = pool
        .iter()
        .enumerate()
        .filter(|(i, r)| i % every != 0 && r.label.is_some())
        .map(|(_, r)| r)
        .collect();
    let embeddings: Vec<Vec<f32>> = if cfg.strategies.iter().any(Strategy::needs_embeddings) {
        stream
            .iter()
            .map(|r| trajectory_embedding(&r.features, r.steps))
            .collect()
    } else {
        Vec::new()
    };
    let warm_rows = (cfg.warm_start * stream.len() as f64).round() as usize;
    let mut curves = Vec::new();
    for &seed in &cfg.seeds {
        for strategy in &cfg.strategies {
            let w = HeadsWeights::init(cfg.heads, dim, seed);
            let mut trainer =
                Trainer::new(&w, &w, TrainConfig { seed, ..cfg.train }, tch::Device::Cpu)?;
            let mut rng = NormalRng::new(seed ^ 0x5eed);
            let mut order: Vec<usize> = (0..stream.len()).collect();
            for i in (1..order.len()).rev() {
                let j = ((rng.next_unit() * (i + 1) as f64) as usize).min(i);
                order.swap(i, j);
            }
            let mut labelled: HashSet<usize> = HashSet::new();
            let mut labelled_rows: Vec<FeatureRow> = Vec::new();
            let mut next_eval = cfg.eval_every.max(1);
            let mut seen = 0;
            let mut points = vec![evaluate(&trainer, &holdout, dev, 0, 0)?];
            // the heads the stream is scored with: the last export, as the streaming loop does
            let mut scorer = snapshot(&trainer)?;
            let mut labeller = PoolLabeller::default();
            let mut quota = RateQuota::default();
            for _ in 0..cfg.passes.max(1) {
                for chunk in order.chunks(cfg.stream_batch.max(1)) {
                    let rows: Vec<FeatureRow> = chunk.iter().map(|&i| stream[i].clone()).collect();
                    let refs: Vec<&FeatureRow> = rows.iter().collect();
                    let probs = scorer.probabilities(&flat(&refs))?;
                    let e = scorer.heads.heads;
                    let mut cursor = 0;
                    let decisions: Vec<_> = rows
                        .iter()
                        .map(|r| {
                            let (mean, std) =
                                step_stats(&probs[cursor * e..(cursor + r.steps) * e], e);
                            cursor += r.steps;
                            decide(&mean, &std, cfg.rule)
                        })
                        .collect();
                    let batch_embeddings: Vec<Vec<f32>> = if strategy.needs_embeddings() {
                        chunk.iter().map(|&i| embeddings[i].clone()).collect()
                    } else {
                        Vec::new()
                    };
                    let view = Candidates {
                        decisions: &decisions,
                        embeddings: &batch_embeddings,
                        warm_start: seen < warm_rows,
                        quota: strategy.quota(&mut quota, rows.len()),
                    };
                    let chosen = strategy.choose_mask(&view, &mut rng);
                    seen += rows.len();
                    let step_before = trainer.step();
                    let batch = label_and_train(
                        &mut trainer,
                        &mut labeller,
                        &rows,
                        &chosen,
                        u64::MAX,
                        |i| LabelRequest {
                            key: String::new(),
                            problem: String::new(),
                            steps: vec![String::new(); rows[i].steps],
                            pool_label: rows[i].label,
                        },
                    )?;
                    let labelled_at = (0..rows.len()).filter(|&i| batch.labels[i].is_some());
                    for (i, row) in labelled_at.zip(batch.rows) {
                        // a later pass labels a row again: the labelled set holds it once
                        if labelled.insert(chunk[i]) {
                            labelled_rows.push(row);
                        }
                    }
                    if export_due(step_before, trainer.step(), cfg.export_every) {
                        scorer = snapshot(&trainer)?;
                    }
                    while labelled.len() >= next_eval {
                        points.push(evaluate(&trainer, &holdout, dev, labelled.len(), seen)?);
                        next_eval += cfg.eval_every.max(1);
                    }
                }
            }
            if points
                .last()
                .is_none_or(|p| p.labels != labelled.len() || p.steps != trainer.step())
            {
                points.push(evaluate(&trainer, &holdout, dev, labelled.len(), seen)?);
            }
            let retrained = if cfg.retrain_steps > 0 && !labelled_rows.is_empty() {
                let start = HeadsWeights::init(cfg.heads, dim, seed);
                let train = TrainConfig {
                    seed,
                    lr: cfg.retrain_lr,
                    ..cfg.train
                };
                let heads = retrain(&labelled_rows, &start, train, cfg.retrain_steps)?;
                Some(evaluate(&heads, &holdout, dev, labelled.len(), seen)?)
            } else {
                None
            };
            let curve = Curve {
                strategy: strategy.to_string(),
                family: strategy.family().to_string(),
                rate: strategy.rate(),
                seed,
                points,
                retrained,
            };
            progress(&curve);
            curves.push(curve);
        }
    }
    Ok(ExperimentReport {
        config: cfg.clone(),
        pool_streamed: stream.len(),
        holdout: holdout.len(),
        dev: dev.iter().map(|(n, _)| n.clone()).collect(),
        curves,
    })
}
