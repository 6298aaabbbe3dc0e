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
    #[error("{0}")]
    Other(String),
}
