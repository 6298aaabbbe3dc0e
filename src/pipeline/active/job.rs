//! What the loop is asked to do (its settings: flags and file keys, and the job), and what it
//! reports.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::LoopState;
use crate::pipeline::score::ScoreJob;
use crate::pipeline::PipelineError;
use crate::select::{Keep, RatePicks};
use crate::sink::DataFormat;
use crate::train::{Recipe, TrainConfig, TrainerSettings};

#[derive(Debug, Clone)]
pub struct ActiveJob {
    /// The pool and scorer settings; its `output` is ignored (the loop places scored parts itself).
    pub score: ScoreJob,
    pub output: PathBuf,
    /// Cold start: fresh heads (E, seed) instead of the model's (the paper's setting).
    pub cold_start: Option<(usize, u64)>,
    pub train: TrainConfig,
    pub selection: Keep,
    /// Which rows a keep rate takes from a batch.
    pub picks: RatePicks,
    /// At the end, fresh heads trained on every label of the run for this many steps (0: the
    /// heads of the pass are the model), at `retrain_lr`.
    pub retrain_steps: u64,
    pub retrain_lr: f64,
    /// Stop asking for labels after this many (rows keep flowing, recorded as over budget).
    pub label_budget: Option<u64>,
    /// Export, refresh the scorer and checkpoint every this many optimiser steps.
    pub export_every: u64,
    /// Development feature stores evaluated every `eval_every` labels.
    pub dev: Vec<PathBuf>,
    pub eval_every: u64,
    pub resume: bool,
    /// Start again in a folder holding an earlier run: its files (only the loop's) are removed.
    pub overwrite: bool,
    /// Stop (checkpointed, resumable) once this many pool rows are done in total.
    pub stop_after_rows: Option<u64>,
    /// Label by this judge instead of the pool's label column (its answer cache makes a resumed
    /// run pay only for trajectories not answered before).
    pub judge: Option<crate::label::judge::JudgeConfig>,
    /// Also write each labelled row's problem, steps and step labels in TRL's layout in the
    /// decision records.
    pub label_format: crate::label::LabelFormat,
    /// How the scored rows are stored (`scored/part-K`).
    pub format: DataFormat,
}

crate::settings! {
    /// How the loop trains, checkpoints and evaluates: `actprm active`'s flags and the keys of a
    /// pipeline file's train stage (defined once here).
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(default)]
    pub struct ActiveSettings {
        /// Cold start with fresh heads (the paper's setting): E heads.
        #[arg(long)]
        pub cold_start: Option<usize>,
        #[arg(long)]
        pub seed: u64 = 0,
        /// With --keep-rate: diverse (uncertain rows spread over feature clusters) or
        /// most-uncertain (the paper's ranking).
        #[arg(long, value_enum)]
        pub picks: RatePicks = RatePicks::default(),
        /// The optimiser (the streaming recipe: lr 2e-3, warm-up 10).
        #[command(flatten)]
        #[serde(flatten)]
        pub trainer: TrainerSettings,
        /// Export + refresh the scorer + checkpoint every this many steps.
        #[arg(long)]
        pub export_every: u64 = crate::train::EXPORT_EVERY,
        /// Development feature stores (`actprm score --features`), evaluated every eval_every labels.
        #[arg(long, num_args = 1..)]
        pub dev: Vec<PathBuf>,
        #[arg(long)]
        pub eval_every: u64 = 500,
        /// Continue a stopped run in the same output folder.
        #[arg(long)]
        pub resume: bool,
        /// Stop after this many pool rows (resumable with resume).
        #[arg(long)]
        pub stop_after_rows: Option<u64>,
        /// At the end, train the heads afresh (from the heads the run started with) on every label
        /// the run collected, for this many steps of 64; the pass's own heads go to model-one-pass/.
        /// 0: off. In the pool experiment (README) this added 0.02-0.08 dev F1 over the pass's heads.
        #[arg(long)]
        pub retrain_steps: u64 = 0,
        #[arg(long)]
        pub retrain_lr: f64 = 1e-3,
        /// How the loop stores its scored rows (scored/part-K, one per commit): parquet, jsonl or
        /// arrow_ipc (hf_dataset names its files by their count, known only at the end, which a
        /// resumable loop cannot wait for).
        #[arg(long, value_enum)]
        pub format: DataFormat = DataFormat::Parquet,
    }
}

impl ActiveSettings {
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        self.trainer.problems(problems);
        loop_problems(
            problems,
            (self.export_every, self.eval_every),
            self.cold_start,
            (self.retrain_steps, self.retrain_lr),
        );
        problems.check(format_problem(self.format));
    }
}

/// The loop's parts are numbered by commit: the Hub's `-of-N` names cannot be.
fn format_problem(format: DataFormat) -> Result<(), crate::limits::SettingError> {
    if format == DataFormat::HfDataset {
        return Err(crate::limits::refuse(
            "format",
            "hf_dataset is not available for the active loop (its parts are numbered by commit, \
             the Hub's names by a count known only at the end); use parquet, jsonl or arrow_ipc"
                .into(),
        ));
    }
    Ok(())
}

/// The loop's range rules, for its settings (flags, file keys) and a job built in code alike.
fn loop_problems(
    problems: &mut crate::limits::Problems,
    (export_every, eval_every): (u64, u64),
    cold_start: Option<usize>,
    (retrain_steps, retrain_lr): (u64, f64),
) {
    use crate::limits::{at_least, positive};
    problems.check(at_least("export_every", export_every, 1));
    problems.check(at_least("eval_every", eval_every, 1));
    if let Some(heads) = cold_start {
        problems.check(at_least("cold_start", heads, 1));
    }
    if retrain_steps > 0 {
        problems.check(positive("retrain_lr", retrain_lr));
    }
}

impl ActiveJob {
    /// The loop over `score`'s pool into `output`, as the user configured it.
    pub fn configured(
        score: ScoreJob,
        output: PathBuf,
        keep: Keep,
        budget: crate::label::LabelBudget,
        settings: &ActiveSettings,
        judge: Option<crate::label::judge::JudgeConfig>,
    ) -> Self {
        Self {
            score,
            output,
            cold_start: settings.cold_start.map(|e| (e, settings.seed)),
            train: TrainConfig {
                seed: settings.seed,
                ..settings.trainer.config(Recipe::STREAMING)
            },
            selection: keep,
            picks: settings.picks,
            retrain_steps: settings.retrain_steps,
            retrain_lr: settings.retrain_lr,
            label_budget: budget.label_budget,
            export_every: settings.export_every,
            dev: settings.dev.clone(),
            eval_every: settings.eval_every,
            resume: settings.resume,
            overwrite: false,
            stop_after_rows: settings.stop_after_rows,
            judge,
            label_format: crate::label::LabelFormat::default(),
            format: settings.format,
        }
    }

    pub fn with_label_format(mut self, format: crate::label::LabelFormat) -> Self {
        self.label_format = format;
        self
    }

    /// The job's own range checks: its parts' (score, train, keep rate) and the loop's, by the
    /// rules `ActiveSettings::problems` states for flags and pipeline files.
    pub fn validate(&self) -> Result<(), PipelineError> {
        self.score.validate()?;
        self.train.validate()?;
        self.selection.validate()?;
        let mut problems = crate::limits::Problems::default();
        problems.check(format_problem(self.format));
        loop_problems(
            &mut problems,
            (self.export_every, self.eval_every),
            self.cold_start.map(|(heads, _)| heads),
            (self.retrain_steps, self.retrain_lr),
        );
        Ok(problems.first()?)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveSummary {
    pub rows_scored: u64,
    pub rows_selected: u64,
    pub labels_used: u64,
    pub over_budget: u64,
    pub unlabelled: u64,
    pub steps: u64,
    pub exports: u64,
    pub model_versions: Vec<String>,
    /// The version of the heads in `model/` (after `retrain_steps`, the retrained ones).
    pub final_model: String,
    pub final_dev_f1: Option<f64>,
    /// With `retrain_steps`: the dev F1 of the pass's own heads (`final_dev_f1` is the
    /// retrained heads').
    pub one_pass_dev_f1: Option<f64>,
    /// With `retrain_steps`: how many labelled trajectories the final heads were trained on.
    pub retrained_on: Option<u64>,
    pub state: LoopState,
}

impl crate::report::Report for ActiveSummary {
    fn table(&self) -> String {
        let mut out = format!(
            "rows scored    {:>10}\nrows selected  {:>10}\nlabels used    {:>10}  (over budget {})\ntrain steps    {:>10}  ({} exports)\n",
            self.rows_scored, self.rows_selected, self.labels_used, self.over_budget, self.steps, self.exports
        );
        if let Some(n) = self.retrained_on {
            out += &format!("retrained on   {n:>10}  labelled trajectories\n");
        }
        if let Some(f1) = self.one_pass_dev_f1 {
            out += &format!("one-pass dev F1 {f1:>9.3}\n");
        }
        if let Some(f1) = self.final_dev_f1 {
            out += &format!("final dev F1   {f1:>10.3}\n");
        }
        out += &format!("model          {}\n", self.final_model);
        out
    }
}
