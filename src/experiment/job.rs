//! `actprm experiment` as a job: read the feature stores, run every strategy and seed, and write
//! results.json, table.md, curve.svg and budget.svg into the output folder.

use std::path::{Path, PathBuf};

use super::plot::{budget_curve_svg, learning_curve_svg};
use super::{run_experiment, Curve, ExperimentConfig, ExperimentReport, Strategy, View};
use crate::formats::features::read_features;
use crate::pipeline::PipelineError;
use crate::select::SelectionRule;
use crate::train::TrainConfig;

/// `actprm experiment`'s settings.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ExperimentSettings {
    /// Comma-separated: actprm (the threshold rule), full, and with a share of the stream to
    /// label, e.g. @5%: actprm (most uncertain), random, warm (random over the warm start, then
    /// most uncertain), diverse (uncertain rows spread over feature clusters), warm-diverse.
    #[arg(
        long,
        default_value = "actprm@10%,diverse@10%,random@10%,full",
        value_delimiter = ','
    )]
    pub strategies: Vec<Strategy>,
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    #[arg(long, default_value_t = 64)]
    pub stream_batch: usize,
    /// Passes over the pool (the paper makes one).
    #[arg(long, default_value_t = 1)]
    pub passes: usize,
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 10)]
    pub holdout_every: usize,
    /// The stream is scored with the heads of the last export, every this many optimiser steps,
    /// as in `actprm active` (1: always the current heads, as the experiment did before).
    #[arg(long, default_value_t = crate::pipeline::active::ActiveSettings::default().export_every)]
    pub export_every: u64,
    #[command(flatten)]
    pub rule: SelectionRule,
    /// Loss weight of wrong steps relative to correct ones.
    #[arg(long, default_value_t = 1.0)]
    pub wrong_weight: f64,
    /// Warm strategies choose at random over this share of the first pass.
    #[arg(long, default_value_t = 0.2)]
    pub warm_start: f64,
    /// Equal training: each run's labelled set also trains fresh heads for this many steps of
    /// 64 trajectories (0: off); the default is the embedded model's recipe (5 epochs of the
    /// full pool).
    #[arg(long, default_value_t = 360)]
    pub retrain_steps: u64,
    #[arg(long, default_value_t = 1e-3)]
    pub retrain_lr: f64,
}

/// What an experiment run wrote.
#[derive(Debug, Clone)]
pub struct ExperimentRun {
    pub report: ExperimentReport,
    /// The markdown table and the budget notes, as in table.md.
    pub table: String,
    pub output: PathBuf,
    pub seconds: f64,
}

/// Runs the experiment on `pool` with `dev` sets (the file stem names each) into `output`:
/// results.json, table.md (the learning curves, and per budget both views), curve.svg and, when
/// strategies have rates, budget.svg.
pub fn run_experiment_files(
    pool: &Path,
    dev: &[PathBuf],
    output: &Path,
    a: &ExperimentSettings,
    progress: impl FnMut(&Curve),
) -> Result<ExperimentRun, PipelineError> {
    let (_, pool_rows) = read_features(pool)?;
    let mut dev_sets = Vec::new();
    for path in dev {
        let (_, rows) = read_features(path)?;
        dev_sets.push((crate::source::jsonl::subset_name(path), rows));
    }
    let cfg = ExperimentConfig {
        strategies: a.strategies.clone(),
        seeds: a.seeds.clone(),
        heads: a.heads,
        train: TrainConfig {
            lr: a.lr,
            lambda: a.lambda,
            warmup_steps: a.warmup,
            pos_weight_wrong: a.wrong_weight,
            ..TrainConfig::default()
        },
        rule: a.rule,
        stream_batch: a.stream_batch,
        passes: a.passes,
        eval_every: a.eval_every,
        holdout_every: a.holdout_every,
        export_every: a.export_every,
        warm_start: a.warm_start,
        retrain_steps: a.retrain_steps,
        retrain_lr: a.retrain_lr,
    };
    let started = std::time::Instant::now();
    let report = run_experiment(&pool_rows, &dev_sets, &cfg, progress)?;
    std::fs::create_dir_all(output).map_err(PipelineError::io(output))?;
    let mut table = report.table();
    table.push('\n');
    for s in report
        .strategies()
        .iter()
        .filter(|s| s.starts_with("actprm"))
    {
        table += &match report.budget_to_match_full(s) {
            Some(b) => format!("{s} first reaches the full-data F1 at {b} labels.\n"),
            None => format!("{s} does not reach the full-data F1 within its labels.\n"),
        };
    }
    if !report.families().is_empty() {
        for view in [View::OnePass, View::Retrained] {
            if view == View::Retrained && a.retrain_steps == 0 {
                continue;
            }
            table += &format!("\n{}", report.budget_table(view));
        }
    }
    let results = output.join("results.json");
    let json = serde_json::to_vec_pretty(&report).map_err(PipelineError::json(&results))?;
    crate::sink::write_atomic(&results, &json)?;
    crate::sink::write_atomic(&output.join("table.md"), table.as_bytes())?;
    let title = format!(
        "Pool-based active learning: {} pool trajectories, dev = {}",
        report.pool_streamed,
        report.dev.join(", ")
    );
    crate::sink::write_atomic(
        &output.join("curve.svg"),
        learning_curve_svg(&report, &title).as_bytes(),
    )?;
    if !report.families().is_empty() {
        crate::sink::write_atomic(
            &output.join("budget.svg"),
            budget_curve_svg(&report, &title).as_bytes(),
        )?;
    }
    Ok(ExperimentRun {
        report,
        table,
        output: output.to_path_buf(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
