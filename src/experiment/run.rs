//! One experiment: every (strategy, seed) pair streams the pool once (or `passes` times) and
//! records development F1 against labels spent.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::budget::mean_std;
use crate::eval::model::samples_from_probs;
use crate::eval::{choose_tau, processbench, Sample};
use crate::formats::features::FeatureRow;
use crate::label::{LabelRequest, PoolLabeller};
use crate::model::HeadsWeights;
use crate::rng::NormalRng;
use crate::score::check::CheckRule;
use crate::select::{
    decide, step_stats, trajectory_embedding, Candidates, RateQuota, SelectionRule, Strategy,
};
use crate::train::algorithm::{export_due, label_and_train, retrain};
use crate::train::{TrainConfig, TrainError, Trainer};

#[derive(Debug, Clone, Serialize)]
pub struct ExperimentConfig {
    pub strategies: Vec<Strategy>,
    pub seeds: Vec<u64>,
    pub heads: usize,
    pub train: TrainConfig,
    pub rule: SelectionRule,
    /// Trajectories scored per stream batch (Algorithm 1's batch).
    pub stream_batch: usize,
    pub passes: usize,
    /// Evaluate on the development sets every this many labels.
    pub eval_every: usize,
    /// Every n-th pool row is held out (never streamed) to choose tau, as a user with a labelled
    /// pool would; the development sets are never used for any choice.
    pub holdout_every: usize,
    /// The scorer's heads are the trainer's as of the last export, every this many optimiser steps,
    /// as in `actprm active` (1: always the trainer's current heads).
    pub export_every: u64,
    /// Warm strategies choose at random over this share of the first pass.
    pub warm_start: f64,
    /// The equal-training view: after its pass, each run's labelled set trains fresh heads (the
    /// run's seed) for this many steps of `train.batch_size` at `retrain_lr`, so strategies
    /// are compared by the labels they chose, not by the optimiser steps their rate allowed.
    /// 0: off.
    pub retrain_steps: u64,
    pub retrain_lr: f64,
}

impl ExperimentConfig {
    pub fn validate(&self) -> Result<(), crate::limits::SettingError> {
        use crate::limits::{at_least, fraction, refuse};
        self.train.validate()?;
        at_least("heads", self.heads, 1)?;
        at_least("stream_batch", self.stream_batch, 1)?;
        at_least("passes", self.passes, 1)?;
        at_least("eval_every", self.eval_every, 1)?;
        at_least("holdout_every", self.holdout_every, 2)?;
        at_least("export_every", self.export_every, 1)?;
        fraction("warm_start", self.warm_start, false)?;
        if self.retrain_steps > 0 && !(self.retrain_lr > 0.0 && self.retrain_lr.is_finite()) {
            return Err(refuse("retrain_lr", "must be a positive number".into()));
        }
        fraction("delta_pred", self.rule.delta_pred, false)?;
        fraction("delta_std", self.rule.delta_std, false)?;
        if self.seeds.is_empty() || self.strategies.is_empty() {
            return Err(refuse(
                "strategies",
                "and seeds need at least one value each".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub labels: usize,
    pub seen: usize,
    pub steps: u64,
    pub tau: f32,
    pub mean_f1: f64,
    pub subsets: BTreeMap<String, Option<f64>>,
    pub acc_error: BTreeMap<String, Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub strategy: String,
    /// The strategy without its rate, and its rate: a point of the family's budget curve.
    pub family: String,
    pub rate: Option<f64>,
    pub seed: u64,
    pub points: Vec<CurvePoint>,
    /// The labelled set of the pass, retrained for `retrain_steps` (the equal-training view).
    pub retrained: Option<CurvePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    pub config: ExperimentConfig,
    pub pool_streamed: usize,
    pub holdout: usize,
    pub dev: Vec<String>,
    pub curves: Vec<Curve>,
}

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

impl ExperimentReport {
    /// Strategy names in the order they were run.
    pub fn strategies(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.curves {
            if !names.contains(&c.strategy) {
                names.push(c.strategy.clone());
            }
        }
        names
    }

    /// Mean and standard deviation over seeds of the F1 each strategy had after spending at most
    /// `budget` labels (the last evaluation at or under it); `None` once a strategy's curve ends
    /// before the budget.
    pub fn at_budget(&self, strategy: &str, budget: usize) -> Option<(f64, f64)> {
        let values: Vec<f64> = self
            .curves
            .iter()
            .filter(|c| c.strategy == strategy)
            .map(|c| {
                let last = c.points.last()?;
                if last.labels < budget && budget > last.labels + self.config.eval_every / 2 {
                    return None;
                }
                c.points
                    .iter()
                    .rfind(|p| p.labels <= budget)
                    .map(|p| p.mean_f1)
            })
            .collect::<Option<Vec<f64>>>()?;
        mean_std(&values)
    }

    /// Final F1 (mean, std over seeds) and labels spent (mean) per strategy.
    pub fn finals(&self, strategy: &str) -> Option<(f64, f64, f64)> {
        let finals: Vec<(f64, usize)> = self
            .curves
            .iter()
            .filter(|c| c.strategy == strategy)
            .filter_map(|c| c.points.last().map(|p| (p.mean_f1, p.labels)))
            .collect();
        let (m, s) = mean_std(&finals.iter().map(|f| f.0).collect::<Vec<_>>())?;
        Some((
            m,
            s,
            finals.iter().map(|f| f.1 as f64).sum::<f64>() / finals.len() as f64,
        ))
    }

    /// The smallest evaluated budget at which `strategy` reaches the full-data strategy's final F1.
    pub fn budget_to_match_full(&self, strategy: &str) -> Option<usize> {
        let (target, _, _) = self.finals("full")?;
        let budgets: Vec<usize> = self
            .curves
            .iter()
            .filter(|c| c.strategy == strategy)
            .flat_map(|c| c.points.iter().map(|p| p.labels))
            .collect();
        let mut grid: Vec<usize> = budgets
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        grid.sort();
        grid.into_iter().filter(|&b| b > 0).find(|&b| {
            self.at_budget(strategy, b)
                .is_some_and(|(m, _)| m >= target - 1e-9)
        })
    }

    /// The learning-curve table in Markdown.
    pub fn table(&self) -> String {
        let strategies = self.strategies();
        let mut out = String::from("| labels |");
        for s in &strategies {
            out += &format!(" {s} |");
        }
        out += "\n|---:|";
        out += &"---:|".repeat(strategies.len());
        out += "\n";
        let max = self
            .curves
            .iter()
            .filter_map(|c| c.points.last().map(|p| p.labels))
            .max()
            .unwrap_or(0);
        let step = self.config.eval_every.max(1);
        let mut budget = step;
        while budget <= max {
            out += &format!("| {budget} |");
            for s in &strategies {
                out += &match self.at_budget(s, budget) {
                    Some((m, sd)) => format!(" {m:.3} ± {sd:.3} |"),
                    None => " - |".into(),
                };
            }
            out += "\n";
            budget += step;
        }
        out += "| **final** |";
        for s in &strategies {
            out += &match self.finals(s) {
                Some((m, sd, labels)) => format!(" {m:.3} ± {sd:.3} ({labels:.0} labels) |"),
                None => " - |".into(),
            };
        }
        out + "\n"
    }
}
