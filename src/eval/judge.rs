//! `actprm judge eval`: the judge's own ProcessBench-style F1 on a labelled set, to check a judge
//! (and a prompt) before spending money on it. A row the judge gave no label counts as a wrong
//! prediction, for errors and for correct solutions alike.

use serde::Serialize;

use std::path::PathBuf;
use std::sync::Arc;

use super::EvalError;
use crate::eval::SubsetScore;
use crate::label::judge::{Accounting, JudgeClient, JudgeConfig, JudgeStatus};
use crate::label::LabelRequest;
use crate::report::Log;

/// One subset's score plus what the judge failed to answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeSubsetScore {
    pub subset: String,
    #[serde(flatten)]
    pub score: SubsetScore,
    /// Rows by `judge_status` (unlabelled ones count as wrong above).
    pub unlabelled: u64,
    pub unparseable: u64,
    pub over_budget: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeEvalReport {
    pub judge: String,
    pub subsets: Vec<JudgeSubsetScore>,
    /// Mean of the subset F1s that exist.
    pub mean_f1: Option<f64>,
    pub accounting: Accounting,
}

/// ProcessBench's per-subset metric from (prediction, human label) pairs.
pub fn score(pairs: &[(Option<i32>, i32)]) -> SubsetScore {
    crate::eval::processbench_predictions(pairs)
}

impl JudgeSubsetScore {
    pub fn new(subset: String, pairs: &[(Option<i32>, i32)], statuses: &[JudgeStatus]) -> Self {
        let count = |s: JudgeStatus| statuses.iter().filter(|&&x| x == s).count() as u64;
        let (unparseable, over_budget, failed) = (
            count(JudgeStatus::Unparseable),
            count(JudgeStatus::OverBudget),
            count(JudgeStatus::Failed),
        );
        Self {
            subset,
            score: score(pairs),
            unlabelled: unparseable + over_budget + failed,
            unparseable,
            over_budget,
            failed,
        }
    }
}

impl JudgeEvalReport {
    pub fn new(judge: String, subsets: Vec<JudgeSubsetScore>, accounting: Accounting) -> Self {
        let f1s: Vec<f64> = subsets.iter().filter_map(|s| s.score.f1).collect();
        let mean_f1 = (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64);
        Self {
            judge,
            subsets,
            mean_f1,
            accounting,
        }
    }

    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
        let _ = writeln!(out, "judge {}", self.judge);
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>9} {:>11} {:>6} {:>11}",
            "subset", "n", "acc err", "acc correct", "F1", "unlabelled"
        );
        for s in &self.subsets {
            let _ = writeln!(
                out,
                "{:<20} {:>6} {:>9} {:>11} {:>6} {:>11}",
                s.subset,
                s.score.n,
                pct(s.score.acc_error),
                pct(s.score.acc_correct),
                pct(s.score.f1),
                s.unlabelled
            );
        }
        let _ = writeln!(out, "mean F1 {}", pct(self.mean_f1));
        out += &self.accounting.table();
        out
    }
}

impl crate::report::Report for JudgeEvalReport {
    fn table(&self) -> String {
        JudgeEvalReport::table(self)
    }
}

/// `actprm judge eval`: the judge's ProcessBench-style F1 on labelled files (one file = one
/// subset): ProcessBench .json arrays, .jsonl, or Parquet with a label column.
pub fn run_judge_eval(
    files: &[PathBuf],
    config: &JudgeConfig,
    log: Log,
) -> Result<JudgeEvalReport, EvalError> {
    let (client, _) = JudgeClient::new(config, log)?;
    let client = Arc::new(client);
    let runtime = crate::runtime::start("actprm-judge", Some(2))
        .map_err(|e| EvalError::Other(format!("starting the runtime: {e}")))?;
    let mut subsets = Vec::new();
    for subset in super::labelled::subsets(files)? {
        let requests: Vec<(LabelRequest, i32)> = super::labelled::read_subset(&subset)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let label = super::labelled::first_error(&r);
                (
                    LabelRequest {
                        key: format!("{}:{i}", subset.name),
                        problem: r.problem,
                        steps: r.steps,
                        pool_label: Some(label),
                    },
                    label,
                )
            })
            .collect();
        let outcomes = runtime.block_on(futures::future::join_all(
            requests.iter().map(|(r, _)| client.judge(r)),
        ));
        let pairs: Vec<(Option<i32>, i32)> = outcomes
            .iter()
            .zip(&requests)
            .map(|(o, (_, l))| (o.label, *l))
            .collect();
        let statuses: Vec<JudgeStatus> = outcomes.iter().map(|o| o.status).collect();
        subsets.push(JudgeSubsetScore::new(subset.name, &pairs, &statuses));
    }
    Ok(JudgeEvalReport::new(
        format!("judge:{}", config.model),
        subsets,
        client.accounting(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_rows_count_as_wrong() {
        let s = score(&[(Some(1), 1), (None, 2), (Some(-1), -1), (None, -1)]);
        assert_eq!((s.n_error, s.n_correct), (2, 2));
        assert_eq!((s.acc_error, s.acc_correct), (Some(0.5), Some(0.5)));
        assert_eq!(s.f1, Some(0.5));
    }
}
