//! Graphs of stages connected by bounded channels. Every command builds one of these.

pub mod active;
pub mod config;
pub mod convert;
pub mod filter;
pub mod label;
pub mod progress;
pub mod refresh;
pub mod score;
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
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A stage's thread panicked: the run fails with its name, and writes no summary.
    #[error("the {stage} stage crashed: {message}")]
    Crashed { stage: String, message: String },
    /// A refusal or an inconsistency, with its own explanation.
    #[error("{0}")]
    Stage(String),
    /// A stage asked the run to stop early and cleanly (the active loop's `stop_after_rows`):
    /// control flow, not a failure; the caller that asked for it turns it into success.
    #[error("stopped on request")]
    Stopped,
    /// A setting out of its range (the same check for CLI flags and pipeline files).
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
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
