//! `actprm experiment` as a job: read the feature stores, run every strategy and seed, and write
//! results.json, table.md, curve.svg and budget.svg into the output folder.

use std::path::{Path, PathBuf};

use super::plot::{budget_curve_svg, learning_curve_svg};
use super::{run_experiment, Curve, ExperimentConfig, ExperimentReport, Strategy, View};
use crate::formats::features::read_features;
use crate::select::{RatePicks, SelectionRule};
use crate::settings::List;
use crate::train::{Recipe, TrainerSettings};
use serde::{Deserialize, Serialize};

crate::settings! {
    /// `actprm experiment`'s flags and a pipeline file's `experiment` keys.
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(default)]
    pub struct ExperimentSettings {
        /// Comma-separated: actprm (the threshold rule), full, and with a share of the stream to
        /// label, e.g. @5%: actprm (most uncertain), random, warm (random over the warm start,
        /// then most uncertain), diverse (uncertain rows spread over feature clusters),
        /// warm-diverse.
        #[arg(long)]
        pub strategies: List<Strategy> = List(vec![
            Strategy::uncertain(0.1, RatePicks::MostUncertain),
            Strategy::uncertain(0.1, RatePicks::Diverse),
            Strategy::Random(0.1),
            Strategy::Full,
        ]),
        /// Each strategy runs once per seed (fresh heads and the stream's order).
        #[arg(long)]
        pub seeds: List<u64> = List(vec![0, 1, 2]),
        /// Ensemble size E of the fresh heads every run starts from.
        #[arg(long)]
        pub heads: usize = 8,
        /// The optimiser (the streaming recipe: lr 2e-3, warm-up 10).
        #[command(flatten)]
        #[serde(flatten)]
        pub trainer: TrainerSettings,
        /// Trajectories scored per stream batch (Algorithm 1's batch).
        #[arg(long)]
        pub stream_batch: usize = 64,
        /// Passes over the pool (the paper makes one).
        #[arg(long)]
        pub passes: usize = 1,
        /// Evaluate on the development sets every this many labels.
        #[arg(long)]
        pub eval_every: usize = 250,
        /// Every N-th pool row is held out (never streamed) to choose tau; the development
        /// sets are never used for any choice.
        #[arg(long)]
        pub holdout_every: usize = 10,
        /// The stream is scored with the heads of the last export, every this many optimiser
        /// steps, as in `actprm active` (1: always the current heads, as the experiment did
        /// before).
        #[arg(long)]
        pub export_every: u64 = crate::train::EXPORT_EVERY,
        #[command(flatten)]
        #[serde(flatten)]
        pub rule: SelectionRule,
        /// Warm strategies choose at random over this share of the first pass.
        #[arg(long)]
        pub warm_start: f64 = 0.2,
        /// Equal training: each run's labelled set also trains fresh heads for this many steps
        /// of 64 trajectories (0: off); the default is the embedded model's recipe (5 epochs of
        /// the full pool).
        #[arg(long)]
        pub retrain_steps: u64 = 360,
        /// Peak learning rate of the equal-training heads.
        #[arg(long)]
        pub retrain_lr: f64 = 1e-3,
    }
}

impl ExperimentSettings {
    /// Range rules, for flags and pipeline-file keys alike: the built configuration's.
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        problems.check(self.config().validate());
    }

    /// What the experiment runs.
    pub fn config(&self) -> ExperimentConfig {
        ExperimentConfig {
            strategies: self.strategies.0.clone(),
            seeds: self.seeds.0.clone(),
            heads: self.heads,
            train: self.trainer.config(Recipe::STREAMING),
            rule: self.rule,
            stream_batch: self.stream_batch,
            passes: self.passes,
            eval_every: self.eval_every,
            holdout_every: self.holdout_every,
            export_every: self.export_every,
            warm_start: self.warm_start,
            retrain_steps: self.retrain_steps,
            retrain_lr: self.retrain_lr,
        }
    }
}

/// Why an experiment could not run or write its results.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Features(#[from] crate::formats::features::FeatureFileError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ExperimentRun {
    /// The table, the budget notes and where the files are.
    pub fn summary(&self) -> String {
        format!(
            "{}({:.0} s; results.json, table.md, curve.svg, budget.svg in {})\n",
            self.table,
            self.seconds,
            self.output.display()
        )
    }
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
) -> Result<ExperimentRun, ExperimentError> {
    let (_, pool_rows) = read_features(pool)?;
    let mut dev_sets = Vec::new();
    for path in dev {
        let (_, rows) = read_features(path)?;
        dev_sets.push((crate::source::jsonl::subset_name(path), rows));
    }
    let cfg = a.config();
    let started = std::time::Instant::now();
    let report = run_experiment(&pool_rows, &dev_sets, &cfg, progress)?;
    std::fs::create_dir_all(output).map_err(|source| ExperimentError::Io {
        path: output.to_path_buf(),
        source,
    })?;
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
    let json = serde_json::to_vec_pretty(&report).map_err(|source| ExperimentError::Json {
        path: results.clone(),
        source,
    })?;
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
