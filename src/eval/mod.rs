//! Evaluation: ProcessBench / PRMBench metrics and the threshold choice (`metrics`), a model on
//! labelled files (`model`, `actprm eval`), a judge on labelled files (`judge`, `actprm judge eval`),
//! both reading labelled files through one reader (`labelled`).

pub mod judge;
pub mod labelled;
pub mod metrics;
pub mod model;

pub use metrics::*;

/// Errors of evaluating a model or a judge.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Judge(#[from] crate::label::judge::JudgeError),
    #[error(transparent)]
    FeatureFile(#[from] crate::formats::features::FeatureFileError),
    /// The model's rule joins the arithmetic check, but a feature store has no verdicts for it.
    #[error(
        "{path}: row {row} ({source_file} row {source_row}) has no arithmetic-check verdict (the \
         store was scored with --check off or by an older actprm), and this model's rule is \
         `check: min`; rescore it with `actprm score --features`, or evaluate the heads alone \
         with --check off"
    )]
    NoCheckVerdict {
        path: std::path::PathBuf,
        row: usize,
        source_file: String,
        source_row: u64,
    },
    #[error("{0}")]
    Other(String),
}
