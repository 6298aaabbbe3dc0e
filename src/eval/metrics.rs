//! Evaluation metrics over scored trajectories: ProcessBench (first-error F1) and PRMBench
//! (step-level PRMScore). Pure functions over per-step mean probabilities, so evaluating inside the
//! active loop and from the CLI is the same code.

use serde::Serialize;

use crate::select::first_error;

/// One evaluated sample: per-step mean probability and its human label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub mean: Vec<f32>,
    /// 0-based first wrong step, -1 = all correct.
    pub label: i32,
    /// The first step with a false equality, when the arithmetic check is on
    /// (`score::check::CheckRule`): the prediction is then the earlier of it and the model's.
    pub check: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetScore {
    pub n: usize,
    pub n_error: usize,
    pub n_correct: usize,
    /// Exact first-error index on samples with an error (`null` when there are none).
    pub acc_error: Option<f64>,
    /// Predicted -1 on fully correct samples (`null` when there are none).
    pub acc_correct: Option<f64>,
    /// Harmonic mean of the two accuracies (`null` unless both exist).
    pub f1: Option<f64>,
}

/// ProcessBench's per-subset metric at threshold `tau`.
pub fn processbench(samples: &[Sample], tau: f32) -> SubsetScore {
    let pairs: Vec<(Option<i32>, i32)> = samples
        .iter()
        .map(|s| {
            let model = first_error(&s.mean, tau);
            (
                Some(crate::score::check::earliest_error(model, s.check)),
                s.label,
            )
        })
        .collect();
    processbench_predictions(&pairs)
}

/// Step-level AUROC of "this step is wrong", threshold-free: each sample's labelled steps (every
/// step of a correct trajectory; the steps up to and including the first wrong one of an
/// erroneous trajectory) ranked by `wrongness(sample, step)`, ties counting half. `None` when
/// either class is empty.
pub fn step_auroc(samples: &[Sample], wrongness: impl Fn(&Sample, usize) -> f64) -> Option<f64> {
    let mut scored: Vec<(f64, bool)> = Vec::new();
    for s in samples {
        let labelled = if s.label < 0 {
            s.mean.len()
        } else {
            (s.label as usize + 1).min(s.mean.len())
        };
        scored.extend((0..labelled).map(|k| (wrongness(s, k), s.label == k as i32)));
    }
    let wrong = scored.iter().filter(|(_, w)| *w).count();
    let right = scored.len() - wrong;
    if wrong == 0 || right == 0 {
        return None;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann-Whitney: the sum of the wrong steps' ranks, ties given their mean rank
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let j = (i..scored.len())
            .find(|&j| scored[j].0 != scored[i].0)
            .unwrap_or(scored.len());
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * scored[i..j].iter().filter(|(_, w)| *w).count() as f64;
        i = j;
    }
    let (w, r) = (wrong as f64, right as f64);
    Some((rank_sum - w * (w + 1.0) / 2.0) / (w * r))
}

/// ProcessBench's per-subset metric from (predicted first error, human label) pairs; a missing
/// prediction (a judge that gave no label) counts as wrong.
pub fn processbench_predictions(pairs: &[(Option<i32>, i32)]) -> SubsetScore {
    let (mut err_total, mut err_hit, mut ok_total, mut ok_hit) = (0usize, 0usize, 0usize, 0usize);
    for &(predicted, label) in pairs {
        if label >= 0 {
            err_total += 1;
            err_hit += usize::from(predicted == Some(label));
        } else {
            ok_total += 1;
            ok_hit += usize::from(predicted == Some(-1));
        }
    }
    let acc = |hit: usize, total: usize| (total > 0).then(|| hit as f64 / total as f64);
    let (acc_error, acc_correct) = (acc(err_hit, err_total), acc(ok_hit, ok_total));
    let f1 = match (acc_error, acc_correct) {
        (Some(a), Some(b)) if a + b > 0.0 => Some(2.0 * a * b / (a + b)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    SubsetScore {
        n: pairs.len(),
        n_error: err_total,
        n_correct: ok_total,
        acc_error,
        acc_correct,
        f1,
    }
}

/// The threshold (grid 0.01..0.99) that maximises ProcessBench F1 on `samples`; ties go to the
/// threshold closest to 0.5. Used with "choose tau on the first subset, reuse on the others".
pub fn choose_tau(samples: &[Sample]) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for i in 1..100 {
        let tau = i as f32 / 100.0;
        let f1 = processbench(samples, tau)
            .f1
            .or(processbench(samples, tau).acc_error)
            .unwrap_or(0.0);
        let better = f1 > best.0 + 1e-12
            || ((f1 - best.0).abs() <= 1e-12 && (tau - 0.5).abs() < (best.1 - 0.5).abs());
        if better {
            best = (f1, tau);
        }
    }
    best.1
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrmBenchScore {
    pub steps: usize,
    pub f1_valid: f64,
    pub f1_invalid: f64,
    pub prm_score: f64,
}

/// PRMBench: each step valid iff p > 0.5; `error_steps` are 1-based indices of invalid steps.
pub fn prmbench(samples: &[(Vec<f32>, Vec<i32>)]) -> PrmBenchScore {
    let (mut tp_v, mut fp_v, mut fn_v, mut tp_i, mut fp_i, mut fn_i, mut steps) =
        (0, 0, 0, 0, 0, 0, 0usize);
    for (probs, errors) in samples {
        for (i, &p) in probs.iter().enumerate() {
            steps += 1;
            let truly_valid = !errors.contains(&(i as i32 + 1));
            let predicted_valid = p > 0.5;
            match (truly_valid, predicted_valid) {
                (true, true) => tp_v += 1,
                (false, false) => tp_i += 1,
                (false, true) => {
                    fp_v += 1;
                    fn_i += 1
                }
                (true, false) => {
                    fn_v += 1;
                    fp_i += 1
                }
            }
        }
    }
    let f1 = |tp: usize, fp: usize, fnn: usize| {
        if tp == 0 {
            0.0
        } else {
            2.0 * tp as f64 / (2 * tp + fp + fnn) as f64
        }
    };
    let (f1_valid, f1_invalid) = (f1(tp_v, fp_v, fn_v), f1(tp_i, fp_i, fn_i));
    PrmBenchScore {
        steps,
        f1_valid,
        f1_invalid,
        prm_score: (f1_valid + f1_invalid) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_auroc_ranks_the_first_wrong_step_against_the_steps_before_it() {
        let sample = |mean: &[f32], label| Sample {
            mean: mean.to_vec(),
            label,
            check: None,
        };
        let wrongness = |s: &Sample, k: usize| 1.0 - s.mean[k] as f64;
        // wrong steps (0.2, 0.5) against correct ones (0.9, 0.8, 0.6, 0.5); the step after the
        // first error (0.1) is unlabelled and left out
        let samples = [
            sample(&[0.9, 0.2, 0.1], 1),
            sample(&[0.8, 0.6], -1),
            sample(&[0.5], 0),
            sample(&[0.5], -1),
        ];
        // pairs (wrong, right) ordered right: 0.2 beats all 4; 0.5 beats 3, ties 1
        assert_eq!(step_auroc(&samples, wrongness), Some((4.0 + 3.5) / 8.0));
        assert_eq!(step_auroc(&samples[1..2], wrongness), None);
    }

    fn s(mean: &[f32], label: i32) -> Sample {
        Sample {
            mean: mean.to_vec(),
            label,
            check: None,
        }
    }

    #[test]
    fn processbench_on_a_hand_computed_subset() {
        let samples = vec![
            s(&[0.9, 0.2, 0.1], 1), // error found exactly
            s(&[0.9, 0.8, 0.1], 1), // predicted 2, wrong
            s(&[0.9, 0.9], -1),     // correct, predicted -1
            s(&[0.4, 0.9], -1),     // correct, predicted 0
        ];
        let r = processbench(&samples, 0.5);
        assert_eq!((r.n_error, r.n_correct), (2, 2));
        assert_eq!(r.acc_error, Some(0.5));
        assert_eq!(r.acc_correct, Some(0.5));
        assert!((r.f1.unwrap() - 0.5).abs() < 1e-12);
        // at tau 0.85 sample 2 becomes exact, sample 3 stays -1 (0.9 >= 0.85), sample 4 still fails
        let r = processbench(&samples, 0.85);
        assert_eq!(r.acc_error, Some(1.0));
        assert!((r.f1.unwrap() - 2.0 * 0.5 / 1.5).abs() < 1e-12);
    }

    #[test]
    fn one_sided_subsets_have_no_f1() {
        let r = processbench(&[s(&[0.1], 0)], 0.5);
        assert_eq!((r.acc_error, r.acc_correct, r.f1), (Some(1.0), None, None));
    }

    #[test]
    fn tau_is_chosen_by_f1_then_closeness_to_half() {
        let samples = vec![s(&[0.9, 0.8, 0.1], 1), s(&[0.95, 0.95], -1)];
        let tau = choose_tau(&samples);
        assert!(tau > 0.8 && tau <= 0.9, "{tau}");
        assert_eq!(processbench(&samples, tau).f1, Some(1.0));
    }

    #[test]
    fn prmbench_on_hand_computed_steps() {
        // steps: valid/pred valid, invalid/pred invalid, invalid/pred valid, valid/pred valid
        let r = prmbench(&[(vec![0.9, 0.2, 0.7], vec![2, 3]), (vec![0.6], vec![])]);
        // valid class: tp 2, fp 1, fn 0 -> 4/5; invalid class: tp 1, fp 0, fn 1 -> 2/3
        assert!((r.f1_valid - 0.8).abs() < 1e-12);
        assert!((r.f1_invalid - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.prm_score - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }
}
