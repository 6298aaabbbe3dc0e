//! ActPRM's uncertainty and selection rule, per trajectory (ACTPRM.md, "Uncertainty and selection").

pub mod diversity;
pub mod reward;
pub mod strategy;

use serde::{Deserialize, Serialize};

use crate::rng::NormalRng;
pub use diversity::{diverse_picks, trajectory_embedding};
pub use strategy::{Candidates, Strategy};

/// The probability below which a step counts as the first predicted error when deciding which
/// steps matter for selection (fixed by the method; the *reported* first error uses `tau`).
pub const SELECTION_CUT: f32 = 0.5;

crate::settings! {
    /// Thresholds of the confidence test (`--delta-pred`, `--delta-std`; the same keys in files).
    #[derive(
        Debug, Clone, Copy, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
    )]
    #[serde(default)]
    pub struct SelectionRule {
        /// A step is confident only if max(mu, 1 - mu) >= delta_pred ...
        #[arg(long)]
        #[schemars(range(min = 0.0, max = 1.0))]
        pub delta_pred: f32 = 0.9,
        /// ... and its std over heads <= delta_std.
        #[arg(long)]
        #[schemars(range(min = 0.0, max = 1.0))]
        pub delta_std: f32 = 0.01,
    }
}

/// Which trajectories of a scored batch go on (kept by `filter`, labelled by the active loop).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Keep {
    /// ActPRM's threshold rule (`delta_pred` / `delta_std`).
    Rule,
    /// This fraction of the stream (`RateQuota`), taken from each batch by uncertainty (in the
    /// active loop, as `RatePicks` says).
    Rate(f64),
}

impl Keep {
    /// A keep rate takes a fraction in (0, 1]: a rate of 0 would keep (or label) nothing.
    pub fn validate(&self) -> Result<(), crate::limits::SettingError> {
        match *self {
            Keep::Rule => Ok(()),
            Keep::Rate(rate) => crate::limits::fraction("keep_rate", rate, true),
        }
    }
}

/// `--keep-rate`, and the `keep_rate` key of a pipeline file's filter stage.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct KeepRate {
    /// Keep (label, in the active loop) this fraction of the rows, the uncertain rows of each
    /// batch that --picks chooses, instead of ActPRM's threshold rule. The
    /// fraction holds over the run (over each unit in `filter`), so small rates are not rounded
    /// away in small batches.
    #[arg(long)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub keep_rate: Option<f64>,
}

impl KeepRate {
    pub fn keep(&self) -> Keep {
        self.keep_rate.map_or(Keep::Rule, Keep::Rate)
    }

    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        problems.check(self.keep().validate());
    }
}

/// Which rows a keep rate takes from a batch (`--picks` of `filter` and `active`; `picks` in a
/// pipeline file's filter and train stages).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RatePicks {
    /// Uncertain rows spread over feature clusters (`diversity.rs`): in the pool experiment
    /// (README), never worse than the most uncertain rows and best of all strategies once the
    /// labelled set is retrained.
    #[default]
    Diverse,
    /// The batch's most uncertain rows (the paper's ranking).
    MostUncertain,
}

impl RatePicks {
    /// `k` rows of a batch, ascending. `embeddings`: one per row (`trajectory_embedding`).
    pub fn pick(
        self,
        uncertainty: &[f32],
        embeddings: &[Vec<f32>],
        k: usize,
        rng: &mut NormalRng,
    ) -> Vec<usize> {
        let mut picks = match self {
            RatePicks::Diverse => diverse_picks(uncertainty, embeddings, k, rng),
            RatePicks::MostUncertain => top_uncertain(uncertainty, k),
        };
        picks.sort_unstable();
        picks
    }
}

/// What the rule decided for one trajectory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub selected: bool,
    /// Some counted step has `max(mu, 1 - mu) < delta_pred`.
    pub aleatoric: bool,
    /// Some counted step has `sigma > delta_std`.
    pub epistemic: bool,
    /// How far the least confident counted step is past the thresholds: the larger of
    /// `(1 - max(mu, 1 - mu)) / (1 - delta_pred)` and `sigma / delta_std`. The rule selects exactly
    /// when this exceeds 1, so ranking by it turns the rule into a keep-rate control.
    pub uncertainty: f32,
}

impl Decision {
    pub fn reason(&self) -> &'static str {
        match (self.aleatoric, self.epistemic) {
            (true, true) => "aleatoric+epistemic",
            (true, false) => "aleatoric",
            (false, true) => "epistemic",
            (false, false) => "confident",
        }
    }
}

/// A keep rate spent over a stream instead of rounded in every batch: after `offered` rows,
/// `round(rate * offered)` have been granted. Rounded per batch, a rate of 0.5 % keeps nothing of
/// batches of 64 rows, and 2 % keeps 1.6 %. `filter` spends one per unit, the active loop one per
/// run (kept in its state, so a resumed run grants what an uninterrupted one would).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RateQuota {
    pub offered: u64,
    pub granted: u64,
}

impl RateQuota {
    /// Rows the rate grants from the next batch of `n`.
    pub fn grant(&mut self, rate: f64, n: usize) -> usize {
        self.offered += n as u64;
        let due = ((self.offered as f64 * rate).round() as u64).min(self.offered);
        let k = due.saturating_sub(self.granted).min(n as u64);
        self.granted += k;
        k as usize
    }
}

/// Indices of the `k` most uncertain rows, most uncertain first (ties go to the earlier row).
pub fn top_uncertain(uncertainty: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..uncertainty.len()).collect();
    order.sort_by(|&a, &b| uncertainty[b].total_cmp(&uncertainty[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Mean and unbiased standard deviation over heads for each step; `probs` is `[steps, heads]`.
pub fn step_stats(probs: &[f32], heads: usize) -> (Vec<f32>, Vec<f32>) {
    probs
        .chunks_exact(heads)
        .map(|row| {
            let mean = row.iter().map(|&p| p as f64).sum::<f64>() / heads as f64;
            let std = if heads > 1 {
                (row.iter().map(|&p| (p as f64 - mean).powi(2)).sum::<f64>() / (heads - 1) as f64)
                    .sqrt()
            } else {
                0.0
            };
            (mean as f32, std as f32)
        })
        .unzip()
}

/// 0-based index of the first step with `mean < tau`, or -1 when every step passes.
pub fn first_error(mean: &[f32], tau: f32) -> i32 {
    mean.iter().position(|&m| m < tau).map_or(-1, |i| i as i32)
}

/// Applies the rule to the steps up to and including the first predicted error.
pub fn decide(mean: &[f32], std: &[f32], rule: SelectionRule) -> Decision {
    let k = mean
        .iter()
        .position(|&m| m < SELECTION_CUT)
        .unwrap_or(mean.len().saturating_sub(1));
    let mut decision = Decision {
        selected: false,
        aleatoric: false,
        epistemic: false,
        uncertainty: 0.0,
    };
    for (&mu, &sigma) in mean.iter().zip(std).take(k + 1) {
        let confidence = mu.max(1.0 - mu);
        decision.aleatoric |= confidence < rule.delta_pred;
        decision.epistemic |= sigma > rule.delta_std;
        let aleatoric_ratio = (1.0 - confidence) / (1.0 - rule.delta_pred).max(f32::EPSILON);
        let epistemic_ratio = sigma / rule.delta_std.max(f32::EPSILON);
        decision.uncertainty = decision
            .uncertainty
            .max(aleatoric_ratio)
            .max(epistemic_ratio);
    }
    decision.selected = decision.aleatoric || decision.epistemic;
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_rate_is_spent_over_the_stream_not_rounded_away_per_batch() {
        let mut q = RateQuota::default();
        let granted: usize = (0..70).map(|_| q.grant(0.02, 64)).sum();
        assert_eq!(granted, (70.0 * 64.0 * 0.02f64).round() as usize);
        // per batch, 0.5 % of 64 rounds to 0; over the stream it keeps 0.5 %
        let mut q = RateQuota::default();
        let granted: usize = (0..100).map(|_| q.grant(0.005, 64)).sum();
        assert_eq!(granted, 32);
        let mut q = RateQuota::default();
        assert_eq!((q.grant(1.0, 5), q.grant(1.0, 3)), (5, 3));
        let mut q = RateQuota::default();
        let k = q.grant(0.5, 4);
        assert_eq!(top_uncertain(&[0.1, 0.9, 0.5, 0.7], k), [1, 3]);
    }

    #[test]
    fn stats_use_the_unbiased_std() {
        // heads 0.2, 0.4, 0.6: mean 0.4, sample variance ((.04 + 0 + .04) / 2) = 0.04, std 0.2
        let (m, s) = step_stats(&[0.2, 0.4, 0.6, 1.0, 1.0, 1.0], 3);
        assert!((m[0] - 0.4).abs() < 1e-6 && (s[0] - 0.2).abs() < 1e-6);
        assert_eq!((m[1], s[1]), (1.0, 0.0));
        let (_, single) = step_stats(&[0.3, 0.7], 1);
        assert_eq!(single, vec![0.0, 0.0]);
    }

    #[test]
    fn first_error_uses_tau() {
        assert_eq!(first_error(&[0.9, 0.6, 0.3, 0.1], 0.5), 2);
        assert_eq!(first_error(&[0.9, 0.6, 0.3, 0.1], 0.7), 1);
        assert_eq!(first_error(&[0.9, 0.8], 0.5), -1);
    }

    #[test]
    fn steps_after_the_first_predicted_error_do_not_count() {
        let rule = SelectionRule::default();
        // step 1 is a confident error (0.05); step 2 is uncertain but comes after it.
        let d = decide(&[0.97, 0.05, 0.5], &[0.001, 0.002, 0.3], rule);
        assert!(!d.selected && d.reason() == "confident");
        assert!(d.uncertainty <= 1.0);
    }

    #[test]
    fn both_reasons_are_recorded() {
        let rule = SelectionRule::default();
        let d = decide(&[0.95, 0.8], &[0.001, 0.001], rule);
        assert!(d.selected && d.aleatoric && !d.epistemic);
        let d = decide(&[0.95, 0.99], &[0.05, 0.0], rule);
        assert!(d.selected && !d.aleatoric && d.epistemic);
        assert!((d.uncertainty - 5.0).abs() < 1e-4);
        let d = decide(&[0.7], &[0.2], rule);
        assert_eq!(d.reason(), "aleatoric+epistemic");
    }
}
