//! Keeping the good rows: a trajectory's reward from its step scores, and best-of-n by it.
//! (The uncertainty rule keeps the rows worth labelling; these keep the rows worth training on.)

use serde::{Deserialize, Serialize};

/// How a trajectory's reward is made from its step scores (`--reward`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Reward {
    /// The lowest step score: a trajectory is as good as its worst step (what PRM papers rank
    /// best-of-n samples by).
    Min,
    /// The last step's score.
    Last,
    /// The mean step score.
    Mean,
    /// The product of the step scores (the chance that no step is wrong, if independent).
    Prod,
}

impl Reward {
    /// The reward of one trajectory's step scores (`None` for a trajectory without steps).
    pub fn of(self, steps: &[f32]) -> Option<f32> {
        if steps.is_empty() {
            return None;
        }
        Some(match self {
            Reward::Min => steps.iter().copied().fold(f32::INFINITY, f32::min),
            Reward::Last => steps[steps.len() - 1],
            Reward::Mean => steps.iter().sum::<f32>() / steps.len() as f32,
            Reward::Prod => steps.iter().product(),
        })
    }
}

/// Which rows of one group to keep: the `k` highest rewards among the `eligible` ones, ties to
/// the earlier row (a stable, reproducible choice).
pub fn top_k(rewards: &[Option<f32>], eligible: &[bool], k: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..rewards.len())
        .filter(|&i| eligible[i] && rewards[i].is_some_and(|r| !r.is_nan()))
        .collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (
            rewards[a].unwrap_or(f32::MIN),
            rewards[b].unwrap_or(f32::MIN),
        );
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut keep = vec![false; rewards.len()];
    for &i in order.iter().take(k) {
        keep[i] = true;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_follow_their_definitions() {
        let steps = [0.9, 0.5, 0.8];
        assert_eq!(Reward::Min.of(&steps), Some(0.5));
        assert_eq!(Reward::Last.of(&steps), Some(0.8));
        assert!((Reward::Mean.of(&steps).unwrap() - 2.2 / 3.0).abs() < 1e-6);
        assert!((Reward::Prod.of(&steps).unwrap() - 0.36).abs() < 1e-6);
        assert_eq!(Reward::Min.of(&[]), None);
    }

    #[test]
    fn top_k_keeps_the_best_eligible_rows_ties_to_the_earlier() {
        let r = [Some(0.5), Some(0.9), Some(0.9), None, Some(0.7)];
        assert_eq!(
            top_k(&r, &[true; 5], 2),
            vec![false, true, true, false, false]
        );
        assert_eq!(
            top_k(&r, &[true, false, true, true, true], 2),
            vec![false, false, true, false, true]
        );
        assert_eq!(top_k(&r, &[true; 5], 9).iter().filter(|&&k| k).count(), 4);
    }
}
