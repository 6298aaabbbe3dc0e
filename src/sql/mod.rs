//! SQL over scored datasets with DataFusion: one session factory shared by `actprm sql`, its
//! interactive shell and the `sql` transform of pipeline files, so every entry point sees
//! the same tables, the same PRM functions and the same write restriction.

pub mod format;
pub mod functions;
mod json_lines;
mod object_stores;
pub mod predicate;
pub mod prm_score;
pub mod row_query;
pub mod run;
pub mod session;
pub mod shell;
pub mod transform;

use std::path::PathBuf;

use datafusion::error::DataFusionError;

pub use format::OutputFormat;
pub use session::{execute, register_tables, session, SqlConfig, TableSpec};

/// A statement that would write outside the allowed output folder. Kept as its own type so it
/// survives being wrapped in a `DataFusionError` by the planner and can be reported plainly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write refused: {statement} would write to {target}, {reason}")]
pub struct WriteRefused {
    pub statement: String,
    pub target: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    WriteRefused(#[from] WriteRefused),
    #[error("--table {spec}: {message}")]
    Table { spec: String, message: String },
    #[error("--allow-write {path}: {message}")]
    AllowWrite { path: PathBuf, message: String },
    #[error("{0}")]
    Query(DataFusionError),
    #[error("writing results to {target}: {message}")]
    Output { target: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("shell: {0}")]
    Shell(String),
}

impl From<DataFusionError> for SqlError {
    /// Unwraps a write refusal from wherever the planner wrapped it, so the user reads the
    /// refusal itself rather than "Error during planning: External error: ...".
    fn from(e: DataFusionError) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(refused) = c.downcast_ref::<WriteRefused>() {
                return SqlError::WriteRefused(refused.clone());
            }
            cause = c.source();
        }
        SqlError::Query(e)
    }
}
