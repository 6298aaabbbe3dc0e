//! Graphs of stages connected by bounded channels. Every command builds one of these.

pub mod active;
pub mod config;
pub mod convert;
pub mod filter;
pub mod finetune;
pub mod label;
pub mod progress;
pub mod refresh;
pub mod rows;
pub mod runner;
pub mod score;
pub mod stage;
pub mod stage_list;
pub mod stages;
pub mod summary;
pub mod train;

pub use label::{run_label, LabelJob, LabelSummary};
pub use refresh::{HeadsUpdate, ModelWatcher};
pub use score::{run_score, BatchView, ScoreHooks, ScoreJob};
pub use summary::Summary;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error(transparent)]
    Judge(#[from] crate::label::judge::JudgeError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Sql(#[from] crate::sql::SqlError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    LabelColumn(#[from] crate::label::LabelColumnError),
    #[error(transparent)]
    FeatureFile(#[from] crate::formats::features::FeatureFileError),
    /// Feature files whose vectors do not fit each other or the heads.
    #[error("{path}: features have dimension {found}, {against} {expected}")]
    FeatureDimension {
        path: std::path::PathBuf,
        found: usize,
        expected: usize,
        against: &'static str,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A stage's thread panicked: the run fails with its name, and writes no summary.
    #[error("the {stage} stage crashed: {message}")]
    Crashed { stage: String, message: String },
    /// The run's tokio runtime (for stages that wait on the network) did not start.
    #[error("starting the runtime: {source}")]
    Runtime { source: std::io::Error },
    /// The run accounted for fewer (or more) rows than the inputs' file footers announce.
    #[error(
        "the inputs hold {expected} rows (file footers) but the run accounted for {accounted}: \
         a stage stopped early"
    )]
    ShortRun { expected: u64, accounted: u64 },
    /// A column the run reads has the wrong Arrow type.
    #[error("{path}: column \"{column}\" has type {found}, expected {expected}")]
    ColumnType {
        path: std::path::PathBuf,
        column: String,
        found: String,
        expected: &'static str,
    },
    /// An output folder that holds an earlier run this one would mix with or overwrite.
    #[error(
        "{path} holds a previous run; pass --resume to continue it, --overwrite to start again \
         (only the run's own files are removed), or choose another folder"
    )]
    PreviousRun { path: std::path::PathBuf },
    /// A folder to resume whose records disagree with each other.
    #[error("{path}: {detail}: the folder is inconsistent and cannot be resumed")]
    Inconsistent {
        path: std::path::PathBuf,
        detail: String,
    },
    /// A folder holding a run with other inputs or settings (each difference named).
    #[error(
        "{path} holds {run} with other inputs or settings ({differences}); resuming would mix \
         their outputs. Rerun with the same ones, choose another output folder, or pass \
         {start_again} to discard the earlier outputs"
    )]
    SettingsChanged {
        path: std::path::PathBuf,
        /// "a filter run", "an active run"
        run: &'static str,
        differences: String,
        /// The flag that starts again: `--restart`, `--overwrite`.
        start_again: &'static str,
    },
    #[error(
        "{path} holds committed units but no run.json (an older actprm or a damaged folder): \
         their settings cannot be checked. Pass --restart (in a pipeline file, the filter's \
         `restart: true`) to discard them"
    )]
    UnitsWithoutRecord { path: std::path::PathBuf },
    /// A quality rule of `filter` (`--where`, `--top-k --per`) that cannot be applied.
    #[error("{0}")]
    Quality(String),
    /// Two inputs a filter would name by the same unit ids.
    #[error(
        "{second} has the same name under its input root, size and Parquet footer as {first}: \
         filter units are named by those, so one copy's results would overwrite the other's. \
         Give only one of them (or rename one)"
    )]
    SameUnits {
        first: std::path::PathBuf,
        second: std::path::PathBuf,
    },
    /// Another process holds this shard's lock in the same folder.
    #[error("{path}: another actprm filter is running shard {index}/{count} in this folder")]
    ShardBusy {
        path: std::path::PathBuf,
        index: u64,
        count: u64,
    },
    /// Pool mode labels from the data, which has no label column.
    #[error(
        "pool mode needs a label column (label, ratings, hard_labels or labels); without one, \
         label by a judge"
    )]
    PoolWithoutLabels,
    #[error("no record could be converted ({rejected} rejected)")]
    NothingConverted { rejected: usize },
    /// A batch of a file the run did not plan reached the sink: a bug, never bad input.
    #[error("{0}: rows of a file that was not planned reached the sink")]
    NotPlanned(std::path::PathBuf),
    /// A stage asked the run to stop early and cleanly (the active loop's `stop_after_rows`):
    /// control flow, not a failure; the caller that asked for it turns it into success.
    #[error("stopped on request")]
    Stopped,
    /// `--ray` without a Python that has Ray.
    #[error(
        "{} not found: install Ray with `ACTPRM_RAY=1 ./setup.sh`, or set ACTPRM_RAY_PYTHON to \
         a Python with the cluster's Ray version",
        python.display()
    )]
    RayNotInstalled { python: std::path::PathBuf },
    /// The Ray driver stopped before it reported the end of the run.
    #[error("the Ray driver {status} before the run ended; its log ({}) ends:\n{tail}", log.display())]
    RayDriver {
        status: String,
        log: std::path::PathBuf,
        tail: String,
    },
    /// Units whose tasks failed on every attempt (the rest were then not started); the
    /// committed ones are kept.
    #[error(
        "{failed} of {units} units failed on Ray after their retries and {not_run} were not \
         started (the first error: {first}); the committed units are kept: rerun the same \
         command to do the rest"
    )]
    RayUnitsFailed {
        failed: usize,
        not_run: usize,
        units: usize,
        first: String,
    },
    /// A fresh `filter --ray` into a remote prefix that holds units of these inputs: an
    /// unfinished run's, whose staging folder (with its settings) is on another machine.
    #[error(
        "{url} holds {objects} object(s) of an unfinished filter run of these inputs ({first}, \
         ...): resume it on the machine that started it (its staging folder records the \
         settings), or add --restart to delete them and start again"
    )]
    Unfinished {
        url: String,
        objects: usize,
        first: String,
    },
    /// A setting out of its range (the same check for CLI flags and pipeline files).
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
    /// `finetune` on a model whose backbone is a fixed ONNX file, with no weights to train.
    #[error(
        "fine-tuning needs a backbone actprm writes from fp32 weights (a `backbone` path with \
         {{precision}} and model.safetensors beside it, as the default model has after \
         ./setup.sh); this model's backbone is {}",
        backbone.display()
    )]
    BackboneNotTrainable { backbone: std::path::PathBuf },
    /// `finetune --resume` with a checkpoint of other inputs or settings.
    #[error(
        "{path} is the checkpoint of a fine-tuning run with other inputs or settings \
         ({differences}); rerun with those to continue it, or delete it to start over"
    )]
    CheckpointOfOtherRun {
        path: std::path::PathBuf,
        differences: String,
    },
    /// `--resume` where there is nothing to resume.
    #[error(
        "{path}: no checkpoint to resume (the run finished, or never started with this output)"
    )]
    NoCheckpoint { path: std::path::PathBuf },
    /// Stages that no job runs (`StageList::job`).
    #[error("these stages do not make a runnable pipeline: {0}")]
    Unrunnable(&'static str),
    /// The tokenizer failed on a batch whose records each tokenise alone.
    #[error("tokenising: {0}")]
    Tokenise(String),
    /// A labelled record the fine-tuner cannot use (named by file and row).
    #[error("{path} record {row}: {message}")]
    Record {
        path: std::path::PathBuf,
        row: usize,
        message: String,
    },
}

impl PipelineError {
    /// A JSON file at `path` that does not read or write, for `map_err`.
    pub fn json(path: &std::path::Path) -> impl FnOnce(serde_json::Error) -> Self + '_ {
        move |source| Self::Json {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An I/O failure on `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
