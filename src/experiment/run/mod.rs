//! One experiment: every (strategy, seed) pair streams the pool once (or `passes` times) and
//! records development F1 against labels spent.

use std::collections::BTreeMap;

use serde::Serialize;

use super::budget::mean_std;
use crate::select::{SelectionRule, Strategy};
use crate::train::TrainConfig;

#[cfg(feature = "train")]
mod simulate;
#[cfg(feature = "train")]
pub use simulate::run_experiment;

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

impl Curve {
    /// A progress line for the curve's latest point.
    pub fn progress_line(&self) -> Option<String> {
        let p = self.points.last()?;
        let retrained = self.retrained.as_ref().map_or(String::new(), |r| {
            format!("  retrained {:.3} (tau {:.2})", r.mean_f1, r.tau)
        });
        Some(format!(
            "{:<16} seed {}  labels {:>5}  steps {:>4}  dev F1 {:.3}  (tau {:.2}){retrained}",
            self.strategy, self.seed, p.labels, p.steps, p.mean_f1, p.tau
        ))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    pub config: ExperimentConfig,
    pub pool_streamed: usize,
    pub holdout: usize,
    pub dev: Vec<String>,
    pub curves: Vec<Curve>,
}

#[cfg(not(feature = "train"))]
pub fn run_experiment(
    _pool: &[crate::formats::features::FeatureRow],
    _dev: &[(String, Vec<crate::formats::features::FeatureRow>)],
    _cfg: &ExperimentConfig,
    _progress: impl FnMut(&Curve),
) -> Result<ExperimentReport, crate::train::TrainError> {
    Err(crate::train::TrainError::NotBuilt("experiment"))
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
