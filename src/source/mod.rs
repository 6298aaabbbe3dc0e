//! Sources: where trajectories come from, and how their columns map to problem and steps.

pub mod columns;
pub mod discover;
pub mod flow;
pub mod generate;
pub mod jsonl;
pub mod parquet;
pub mod raw;

pub use columns::{ColumnMapping, RowReject, Trajectory};
pub use discover::discover_inputs;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input {pattern}: {message}")]
    Input { pattern: String, message: String },
    #[error("{file}: column {column:?} {message}")]
    Column {
        file: PathBuf,
        column: String,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("{file}:{line}: {message}")]
    Line {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Setting(#[from] crate::limits::SettingError),
}
