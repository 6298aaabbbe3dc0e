//! Sources: where trajectories come from, and how their columns map to problem and steps.

pub mod columns;
pub mod discover;
pub mod flow;
pub mod generate;
pub mod json_lines;
pub mod jsonl;
pub mod parquet;
pub mod raw;
pub mod remote;

pub use columns::{ColumnMapping, RowReject, Trajectory};
pub use discover::discover_inputs;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};

/// One element of the `steps` list, as the files actprm writes (`convert`, `generate`) have it.
pub fn step_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, true))
}

/// The `steps` column of the trajectory files actprm writes: a list of step texts.
pub fn steps_field() -> Field {
    Field::new("steps", DataType::List(step_item()), false)
}

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
