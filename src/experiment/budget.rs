//! The budget view of an experiment: each strategy family's development F1 at each label budget
//! (`actprm@2%`, `actprm@5%`, ... are one family's points), in two views, and the budget each
//! family needs to reach a share of the full-data F1.

use std::collections::BTreeSet;

use super::{Curve, ExperimentReport};
use crate::select::strategy::percent;

/// Which F1 of a run a budget point reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The heads at the end of the streamed pass: what `actprm active` leaves (one optimiser
    /// step per batch, so a smaller rate also means fewer steps on fewer rows).
    OnePass,
    /// Fresh heads trained for the same number of steps on the pass's labelled set: the labels'
    /// worth alone.
    Retrained,
}

impl View {
    pub fn title(self) -> &'static str {
        match self {
            View::OnePass => "one pass (as `actprm active` trains)",
            View::Retrained => "equal training (labelled set retrained)",
        }
    }

    fn f1(self, curve: &Curve) -> Option<f64> {
        match self {
            View::OnePass => curve.points.last().map(|p| p.mean_f1),
            View::Retrained => curve.retrained.as_ref().map(|p| p.mean_f1),
        }
    }
}

/// One family at one rate, over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetPoint {
    pub rate: f64,
    /// Mean labels spent.
    pub labels: f64,
    pub mean: f64,
    pub std: f64,
    /// (seed, F1)
    pub seeds: Vec<(u64, f64)>,
}

/// Where a family first reaches the target F1.
#[derive(Debug, Clone, PartialEq)]
pub struct Reach {
    pub target: f64,
    /// The smallest rate at which the mean over seeds reaches the target.
    pub mean_curve: Option<f64>,
    /// Per seed, the smallest rate at which that seed's run reaches it.
    pub seeds: Vec<(u64, Option<f64>)>,
}

impl ExperimentReport {
    /// Families that have a rate, in the order they were run.
    pub fn families(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in self.curves.iter().filter(|c| c.rate.is_some()) {
            if !names.contains(&c.family) {
                names.push(c.family.clone());
            }
        }
        names
    }

    /// Every rate any family ran, ascending.
    pub fn rates(&self) -> Vec<f64> {
        let set: BTreeSet<u64> = self
            .curves
            .iter()
            .filter_map(|c| c.rate.map(f64::to_bits))
            .collect();
        let mut rates: Vec<f64> = set.into_iter().map(f64::from_bits).collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    fn point(&self, curves: &[&Curve], rate: f64, view: View) -> Option<BudgetPoint> {
        let seeds: Vec<(u64, f64)> = curves
            .iter()
            .filter_map(|c| view.f1(c).map(|f| (c.seed, f)))
            .collect();
        let (mean, std) = mean_std(&seeds.iter().map(|s| s.1).collect::<Vec<_>>())?;
        let labels = curves
            .iter()
            .filter_map(|c| c.points.last().map(|p| p.labels as f64))
            .sum::<f64>()
            / curves.len() as f64;
        Some(BudgetPoint {
            rate,
            labels,
            mean,
            std,
            seeds,
        })
    }

    /// A family's points, by ascending rate.
    pub fn budget_points(&self, family: &str, view: View) -> Vec<BudgetPoint> {
        self.rates()
            .into_iter()
            .filter_map(|rate| {
                let curves: Vec<&Curve> = self
                    .curves
                    .iter()
                    .filter(|c| c.family == family && c.rate == Some(rate))
                    .collect();
                self.point(&curves, rate, view)
            })
            .collect()
    }

    /// The full-data strategy's F1 (rate 1).
    pub fn full_point(&self, view: View) -> Option<BudgetPoint> {
        let curves: Vec<&Curve> = self.curves.iter().filter(|c| c.family == "full").collect();
        self.point(&curves, 1.0, view)
    }

    /// Where `family` first reaches `share` of the full-data F1 (mean over seeds).
    pub fn reach(&self, family: &str, view: View, share: f64) -> Option<Reach> {
        let target = share * self.full_point(view)?.mean;
        let points = self.budget_points(family, view);
        let mut seeds: Vec<u64> = points
            .iter()
            .flat_map(|p| p.seeds.iter().map(|s| s.0))
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        Some(Reach {
            target,
            mean_curve: points.iter().find(|p| p.mean >= target).map(|p| p.rate),
            seeds: seeds
                .into_iter()
                .map(|seed| {
                    let first = points
                        .iter()
                        .find(|p| p.seeds.iter().any(|&(s, f)| s == seed && f >= target))
                        .map(|p| p.rate);
                    (seed, first)
                })
                .collect(),
        })
    }

    /// The budget table of one view in Markdown: a row per family, a column per rate, and the
    /// budget at which each family reaches 95 % of the full-data F1.
    pub fn budget_table(&self, view: View) -> String {
        const SHARE: f64 = 0.95;
        let rates = self.rates();
        let labels_at = |rate: f64| {
            self.curves
                .iter()
                .filter(|c| c.rate == Some(rate))
                .filter_map(|c| c.points.last().map(|p| p.labels as f64))
                .fold((0.0, 0usize), |(s, n), l| (s + l, n + 1))
        };
        let mut out = format!(
            "{}: dev F1, mean ± std over seeds\n\n| strategy |",
            view.title()
        );
        for &r in &rates {
            let (sum, n) = labels_at(r);
            out += &format!(" {} % ({:.0} labels) |", percent(r), sum / n.max(1) as f64);
        }
        out += " reaches 95 % of full at (mean; per seed) |\n|---|";
        out += &"---:|".repeat(rates.len() + 1);
        out += "\n";
        for family in self.families() {
            out += &format!("| {family} |");
            let points = self.budget_points(&family, view);
            for &r in &rates {
                out += &match points.iter().find(|p| p.rate == r) {
                    Some(p) => format!(" {:.3} ± {:.3} |", p.mean, p.std),
                    None => " - |".into(),
                };
            }
            out += &match self.reach(&family, view, SHARE) {
                Some(reach) => {
                    let at = |r: Option<f64>| r.map_or("not reached".into(), |r| percent(r) + " %");
                    let seeds: Vec<String> = reach.seeds.iter().map(|s| at(s.1)).collect();
                    format!(" {}; {} |", at(reach.mean_curve), seeds.join(", "))
                }
                None => " - |".into(),
            };
            out += "\n";
        }
        if let Some(full) = self.full_point(view) {
            out += &format!(
                "\nfull data ({:.0} labels): {:.3} ± {:.3}; 95 % of it: {:.3}\n",
                full.labels,
                full.mean,
                full.std,
                SHARE * full.mean
            );
        }
        out
    }
}

/// The mean and sample standard deviation (0 for one value); `None` for no values.
pub(super) fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let m = values.iter().sum::<f64>() / values.len() as f64;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64
    } else {
        0.0
    };
    Some((m, var.sqrt()))
}
