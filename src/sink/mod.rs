//! Sinks: where rows end up. Every file is written under a temporary name and renamed into place,
//! so a reader (or a resumed run) never sees half a file.

pub mod atomic;
pub mod parquet;
pub mod rejects;

pub use atomic::write_atomic;
pub use parquet::PartWriter;
pub use rejects::RejectSink;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl SinkError {
    pub(crate) fn at(path: &std::path::Path) -> impl Fn(String) -> SinkError + '_ {
        move |message| SinkError::Write {
            path: path.to_path_buf(),
            message,
        }
    }
}
