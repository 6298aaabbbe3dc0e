//! What a scoring run is asked to do: the settings `score`, `filter` and `active` share (flags and
//! a score stage's keys), `score`'s own extras, and the job.

use std::path::PathBuf;

use crate::model::RuntimeOptions;
use crate::pipeline::PipelineError;
use crate::score::ScoreOptions;
use crate::sink::{DataFormat, DataOutput};
use crate::source::ColumnMapping;

crate::settings! {
    /// How a scoring run reads and scores: flags of `score`, `filter` and `active`, and the keys of a
    /// pipeline file's score stage (defined once here).
    #[derive(
        Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
    )]
    #[serde(default)]
    pub struct ScoreSettings {
        #[command(flatten)]
        #[serde(flatten)]
        pub options: ScoreOptions,
        /// Rows per batch read from Parquet (in the active loop: Algorithm 1's batch).
        #[arg(long)]
        pub batch_rows: usize = 64,
        /// Also write per-head probabilities (step_head_probs).
        #[arg(long)]
        pub head_probs: bool,
    }
}

impl ScoreSettings {
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        self.options.problems(problems);
        problems.check(crate::limits::at_least("batch_rows", self.batch_rows, 1));
    }
}

/// What only `actprm score` (a score stage whose rows go to sinks) can also do.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    clap::Args,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(default)]
pub struct ScoreExtras {
    /// Also write step features (Arrow IPC) for `actprm train`.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Swap in this model directory's heads whenever they change (hot refresh from a trainer).
    #[arg(long)]
    pub watch_model: Option<PathBuf>,
}

/// The model, the columns and the settings of a scoring run, as `score`, `filter` and `active`
/// take them (a pipeline file spreads them over `models`, the source and the score stage).
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Scorer {
    #[command(flatten)]
    pub model: crate::model::ModelOptions,
    #[command(flatten)]
    pub columns: ColumnMapping,
    #[command(flatten)]
    pub settings: ScoreSettings,
}

/// Everything a scoring run needs.
#[derive(Debug, Clone)]
pub struct ScoreJob {
    pub inputs: Vec<String>,
    pub output: PathBuf,
    /// How the rows written to `output` are stored (`score`'s parts, a filter's kept and
    /// skipped rows).
    pub format: DataFormat,
    /// More folders that get the same rows, each in its own format, written in the same stream
    /// (a pipeline file's further sinks after score or filter; absolute paths for a filter,
    /// whose unit records name their files).
    pub more_outputs: Vec<DataOutput>,
    pub model: Option<PathBuf>,
    pub columns: ColumnMapping,
    pub score: ScoreOptions,
    pub runtime: RuntimeOptions,
    /// Rows per Arrow batch read from Parquet.
    pub batch_rows: usize,
    pub rows_per_part: usize,
    /// Also write the `[steps, E]` per-head probabilities.
    pub with_head_probs: bool,
    /// Also write step features (Arrow IPC) for training.
    pub features: Option<PathBuf>,
    /// Poll this model directory and swap in its heads whenever they change.
    pub watch_model: Option<PathBuf>,
    /// Hand step features to `ScoreHooks::on_batch` (the active loop trains on them).
    pub features_to_hooks: bool,
    /// Skip this many input rows (in input order) before scoring: a resumed run's done work.
    pub skip_rows: u64,
    pub progress: bool,
    /// Replace an earlier run's parts, rejects and summary in `output` (else they are refused).
    pub overwrite: bool,
    /// Notices of the run (and of the filter and active jobs built on it).
    pub log: crate::report::Log,
    /// A pipeline's `sql` transform after score or filter: each batch of rows goes through it on
    /// its way to the data sinks (row-wise queries only).
    pub query: Option<String>,
}

impl ScoreJob {
    pub fn new(inputs: Vec<String>, output: PathBuf) -> Self {
        Self {
            inputs,
            output,
            format: DataFormat::default(),
            more_outputs: Vec::new(),
            model: None,
            columns: ColumnMapping::default(),
            score: ScoreOptions::default(),
            runtime: RuntimeOptions::default(),
            batch_rows: 64,
            rows_per_part: 100_000,
            with_head_probs: false,
            features: None,
            watch_model: None,
            features_to_hooks: false,
            query: None,
            skip_rows: 0,
            progress: false,
            overwrite: false,
            log: crate::report::Log::default(),
        }
    }

    /// A job over `inputs` with the model, columns and settings as the user gave them (the one
    /// place flags and pipeline files become a job).
    pub fn configured(inputs: Vec<String>, output: PathBuf, scorer: &Scorer) -> Self {
        let mut job = Self::new(inputs, output);
        job.model = scorer.model.model.clone();
        job.runtime = scorer.model.runtime();
        job.columns = scorer.columns.clone();
        job.score = scorer.settings.options;
        job.batch_rows = scorer.settings.batch_rows;
        job.with_head_probs = scorer.settings.head_probs;
        job
    }

    /// Every folder the rows go to, `output` first.
    pub fn data_outputs(&self) -> impl Iterator<Item = DataOutput> + '_ {
        DataOutput::all(&self.output, self.format, &self.more_outputs)
    }

    /// A SQL session's settings whose `prm_score` scores as this job does.
    pub fn sql_config(&self) -> crate::sql::SqlConfig {
        crate::sql::SqlConfig {
            runtime: self.runtime,
            model: self.model.clone(),
            score: self.score,
            ..Default::default()
        }
    }

    /// Range checks of every numeric setting a scoring run takes.
    pub fn validate(&self) -> Result<(), PipelineError> {
        crate::limits::at_least("batch_rows", self.batch_rows, 1)?;
        crate::limits::at_least("rows_per_part", self.rows_per_part, 1)?;
        Ok(self.score.validate()?)
    }
}
