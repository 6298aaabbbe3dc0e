//! Sinks: where rows end up. Every file is written under a temporary name and renamed into place,
//! so a reader (or a resumed run) never sees half a file.

pub mod atomic;
pub mod parquet;
pub mod rejects;

pub use atomic::{write_atomic, write_atomic_tagged};
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

/// Makes `dir` ready for a run that writes `part-*.parquet`, `rejects/` and `summary.json`: an
/// earlier run's outputs there are refused (a reader such as `sql --table` would mix old parts
/// with new ones), or removed with `overwrite`. Other files in the folder are left alone.
pub fn prepare_output(dir: &std::path::Path, overwrite: bool) -> Result<(), SinkError> {
    let err = SinkError::at(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut earlier = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let owned = (name.starts_with("part-") && name.ends_with(".parquet"))
            || name == "rejects"
            || name == "summary.json";
        if owned {
            earlier.push(entry.path());
        }
    }
    if earlier.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(err(format!(
            "holds an earlier run's output ({} entries such as {}); pass --overwrite \
             to replace it, or choose another folder",
            earlier.len(),
            earlier[0].display()
        )));
    }
    for path in earlier {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| SinkError::at(&path)(e.to_string()))?;
    }
    atomic::sync_dir(dir)
}
