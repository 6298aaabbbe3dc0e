//! Graphs of stages connected by bounded channels. Every command builds one of these.

pub mod active;
pub mod config;
pub mod convert;
pub mod evaluate;
pub mod features;
pub mod filter;
pub mod label;
pub mod progress;
pub mod refresh;
pub mod score;
pub mod summary;
pub mod train;

pub use label::{run_judge_eval, run_label, LabelJob, LabelSummary};
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
    #[error("{0}")]
    Stage(String),
    /// A setting out of its range (the same check for CLI flags and pipeline files).
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
}
