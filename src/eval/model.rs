//! `actprm eval`: score labelled subsets with a model and report ProcessBench (and, where records
//! carry `error_steps`, PRMBench) metrics. Inputs: ProcessBench JSON arrays, JSON Lines, Parquet
//! with a label column, or a step-feature store (`.arrow`, scored by the heads alone).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::EvalError;
use crate::eval::metrics::step_auroc;
use crate::eval::{choose_tau, prmbench, processbench, PrmBenchScore, Sample, SubsetScore};
use crate::formats::features::{read_features, FeatureRow};
use crate::model::{HeadsRunner, LoadedModel, RuntimeOptions};
use crate::score::check::CheckRule;
use crate::score::texts::TextScoreError;
use crate::score::{ScoreOptions, TextScorer};
use crate::select::step_stats;

/// How tau is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TauRule {
    Fixed(f32),
    /// Chosen on the first subset, reused on the others.
    FromFirstSubset,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsetReport {
    #[serde(flatten)]
    pub processbench: SubsetScore,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prmbench: Option<PrmBenchScore>,
    /// The same metric for "the last step is the first error", whatever the text says: a data
    /// set whose erroneous trajectories end at their error gives it a high `acc_error`, and a
    /// model that learned where trajectories end can score well there without reading a step.
    pub last_step_baseline: SubsetScore,
    /// Step-level AUROC of the model's `1 - step_mean` for "this step is wrong" (the heads
    /// alone, no tau, no check): how well the scores rank, whatever the threshold.
    pub step_auroc: Option<f64>,
    /// The same for "this is the last step": near 1 on a set whose erroneous trajectories stop
    /// at their first error, where position alone ranks perfectly.
    pub last_step_auroc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub subsets: BTreeMap<String, SubsetReport>,
    /// Unweighted mean of the subsets' F1 (subsets without an F1 are left out).
    pub mean_f1: Option<f64>,
    pub tau: f32,
    pub tau_rule: String,
    pub model_version: String,
    /// Subset names in input order.
    pub order: Vec<String>,
}

/// A subset's scored samples: per-step means, labels, and PRMBench error steps when present.
pub struct ScoredSubset {
    pub name: String,
    pub samples: Vec<Sample>,
    pub error_steps: Vec<Option<Vec<i32>>>,
}

/// ProcessBench's metric when every sample's last step is predicted as its first error.
fn last_step_baseline(samples: &[Sample]) -> SubsetScore {
    let pairs: Vec<(Option<i32>, i32)> = samples
        .iter()
        .map(|s| (i32::try_from(s.mean.len()).ok().map(|n| n - 1), s.label))
        .collect();
    super::metrics::processbench_predictions(&pairs)
}

/// Applies the metrics to already-scored subsets.
pub fn report(subsets: &[ScoredSubset], rule: TauRule, model_version: String) -> EvalReport {
    let tau = match rule {
        TauRule::Fixed(t) => t,
        TauRule::FromFirstSubset => subsets.first().map_or(0.5, |s| choose_tau(&s.samples)),
    };
    let mut out = BTreeMap::new();
    for s in subsets {
        let with_errors: Vec<(Vec<f32>, Vec<i32>)> = s
            .samples
            .iter()
            .zip(&s.error_steps)
            .filter_map(|(x, e)| e.as_ref().map(|e| (x.mean.clone(), e.clone())))
            .collect();
        out.insert(
            s.name.clone(),
            SubsetReport {
                processbench: processbench(&s.samples, tau),
                prmbench: (!with_errors.is_empty()).then(|| prmbench(&with_errors)),
                last_step_baseline: last_step_baseline(&s.samples),
                step_auroc: step_auroc(&s.samples, |x, k| 1.0 - f64::from(x.mean[k])),
                last_step_auroc: step_auroc(&s.samples, |x, k| {
                    f64::from(u8::from(k + 1 == x.mean.len()))
                }),
            },
        );
    }
    let f1s: Vec<f64> = out.values().filter_map(|r| r.processbench.f1).collect();
    EvalReport {
        mean_f1: (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64),
        subsets: out,
        tau,
        tau_rule: match rule {
            TauRule::Fixed(_) => "fixed".into(),
            TauRule::FromFirstSubset => format!(
                "chosen on {}",
                subsets.first().map_or("", |s| s.name.as_str())
            ),
        },
        model_version,
        order: subsets.iter().map(|s| s.name.clone()).collect(),
    }
}

/// Samples from stored features and `[steps, E]` probabilities for them (all rows, in order);
/// with `CheckRule::Min`, each joined with the check's verdict stored beside the features (a row
/// without one counts as unchecked: see [`require_check_verdicts`]).
pub fn samples_from_probs(
    rows: &[FeatureRow],
    probs: &[f32],
    heads: usize,
    check: CheckRule,
) -> Vec<Sample> {
    let mut samples = samples_of(
        rows.iter().map(|r| (r.steps, r.label.unwrap_or(-1))),
        probs,
        heads,
    );
    if !check.is_off() {
        for (s, r) in samples.iter_mut().zip(rows) {
            s.check = r.check.and_then(|c| usize::try_from(c).ok());
        }
    }
    samples
}

/// Errors when `check` joins the arithmetic check but a row of the store at `path` was scored
/// without it: its F1 would silently be the heads' alone.
pub fn require_check_verdicts(
    rows: &[FeatureRow],
    check: CheckRule,
    path: &std::path::Path,
) -> Result<(), EvalError> {
    if check.is_off() {
        return Ok(());
    }
    match rows.iter().position(|r| r.check.is_none()) {
        None => Ok(()),
        Some(row) => Err(EvalError::NoCheckVerdict {
            path: path.to_path_buf(),
            row,
            source_file: rows[row].source_file.clone(),
            source_row: rows[row].source_row,
        }),
    }
}

/// Samples from `(steps, first-error label)` per trajectory and their `[steps, E]` probabilities,
/// in order.
pub fn samples_of(
    trajectories: impl IntoIterator<Item = (usize, i32)>,
    probs: &[f32],
    heads: usize,
) -> Vec<Sample> {
    let mut cursor = 0;
    trajectories
        .into_iter()
        .map(|(steps, label)| {
            let p = &probs[cursor * heads..(cursor + steps) * heads];
            cursor += steps;
            Sample {
                mean: step_stats(p, heads).0,
                label,
                check: None,
            }
        })
        .collect()
}

/// Scores every input file as one subset; `check` adds the arithmetic check's verdict to the
/// model's where the records carry step text.
pub fn evaluate_files(
    files: &[PathBuf],
    model: &LoadedModel,
    runtime: &RuntimeOptions,
    rule: TauRule,
    check: CheckRule,
    batching: crate::score::Batching,
) -> Result<EvalReport, EvalError> {
    // the scorer applies `check` as it scores, so each sample carries its verdict
    let options = ScoreOptions {
        batching,
        check: Some(check),
        ..ScoreOptions::default()
    };
    // checked by the same rules as every scoring command's flags
    options.validate().map_err(crate::model::ModelError::from)?;
    let mut heads = HeadsRunner::open(&model.heads_bytes, model.version(), runtime)?;
    let mut scorer: Option<TextScorer> = None;
    let mut subsets = Vec::new();
    for subset in super::labelled::subsets(files)? {
        let name = subset.name.clone();
        let path = &subset.files[0];
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "arrow" && subset.files.len() == 1 {
            let (_, rows) = read_features(path)?;
            require_check_verdicts(&rows, check, path)?;
            let features: Vec<f32> = rows
                .iter()
                .flat_map(|r| r.features.iter().copied())
                .collect();
            let probs = heads.probabilities(&features)?;
            let samples = samples_from_probs(&rows, &probs, heads.ensemble_size(), check);
            subsets.push(ScoredSubset {
                name,
                error_steps: vec![None; samples.len()],
                samples,
            });
            continue;
        }
        let records = super::labelled::read_subset(&subset)?;
        if scorer.is_none() {
            let mut opened = TextScorer::open(model, runtime, options)?;
            opened.scorer.tau = model.manifest.tau;
            scorer = Some(opened);
        }
        let scorer = scorer.as_mut().expect("created above");
        let mut samples = Vec::new();
        // as a run's read batches, or the rows that share prefixes together (`--share-window`)
        for chunk in records.chunks(options.batching.share_window.max(64)) {
            let refs: Vec<(&str, &[String])> = chunk
                .iter()
                .map(|r| (r.problem.as_str(), r.steps.as_slice()))
                .collect();
            let (scores, _) = scorer.score(&refs).map_err(|e| match e {
                TextScoreError::Tokenizer(message) => EvalError::Other(message),
                TextScoreError::Model(e) => e.into(),
            })?;
            samples.extend(scores.into_iter().zip(chunk).map(|(s, r)| Sample {
                mean: s.mean,
                label: super::labelled::first_error(r),
                check: s.check,
            }));
        }
        subsets.push(ScoredSubset {
            name,
            error_steps: records.iter().map(|r| r.error_steps.clone()).collect(),
            samples,
        });
    }
    Ok(report(&subsets, rule, model.version()))
}

impl EvalReport {
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>10} {:>12} {:>8} {:>11}",
            "subset", "n", "acc_error", "acc_correct", "F1", "step AUROC"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.3}", x));
        for name in &self.order {
            let subset = &self.subsets[name];
            let r = &subset.processbench;
            let _ = writeln!(
                out,
                "{:<22} {:>6} {:>10} {:>12} {:>8} {:>11}",
                name,
                r.n,
                fmt(r.acc_error),
                fmt(r.acc_correct),
                fmt(r.f1),
                fmt(subset.step_auroc)
            );
            let b = &subset.last_step_baseline;
            let _ = writeln!(
                out,
                "{:<22} {:>6} {:>10} {:>12} {:>8} {:>11}",
                "  last-step baseline",
                b.n,
                fmt(b.acc_error),
                fmt(b.acc_correct),
                fmt(b.f1),
                fmt(subset.last_step_auroc)
            );
            if let Some(p) = &self.subsets[name].prmbench {
                let _ = writeln!(
                    out,
                    "{:<22} PRMScore {:.3} (F1 valid {:.3}, F1 invalid {:.3})",
                    "", p.prm_score, p.f1_valid, p.f1_invalid
                );
            }
        }
        let _ = writeln!(
            out,
            "mean F1 {}  (tau {:.2}, {}; model {})",
            fmt(self.mean_f1),
            self.tau,
            self.tau_rule,
            self.model_version
        );
        out
    }
}

impl crate::report::Report for EvalReport {
    fn table(&self) -> String {
        EvalReport::table(self)
    }
}
