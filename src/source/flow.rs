//! What flows between the stages of a run: a batch of the stage's own kind, or one of the two
//! markers every stage passes on unchanged (rows that could not be read, and the end of a row
//! group, which resumable sinks commit on).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;

use super::{RowReject, Trajectory};

pub enum Flow<B> {
    Batch(B),
    Unreadable(Unreadable),
    GroupEnd(GroupEnd),
}

/// A whole file, row group or batch that could not be decoded (or tokenised): counted, with its
/// reason, never dropped.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub path: Arc<PathBuf>,
    /// Row number of the first row concerned (`None`: the whole file, its footer unreadable).
    pub first_row: Option<u64>,
    pub rows: u64,
    pub reason: String,
}

impl Unreadable {
    /// Its line in `rejects/unreadable.jsonl`.
    pub fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.path.display().to_string(), "first_row": self.first_row,
            "rows": self.rows, "reason": self.reason,
        })
    }

    /// Its notice on stderr: what it was, and what became of its rows (`rejected`, `unreadable`).
    pub fn notice(&self, rows_are: &str) -> String {
        format!(
            "{}: {} ({} rows {rows_are})",
            self.path.display(),
            self.reason,
            self.rows
        )
    }
}

/// Every row of this row group has been emitted (as batches or as unreadable).
#[derive(Debug, Clone)]
pub struct GroupEnd {
    pub path: Arc<PathBuf>,
    pub group: usize,
}

/// Rows as read from Parquet, each extracted or rejected with its reason.
pub struct SourceBatch {
    pub path: Arc<PathBuf>,
    /// Row number (0-based, within the file) of the batch's first row.
    pub first_row: u64,
    pub batch: RecordBatch,
    pub rows: Vec<Result<Trajectory, RowReject>>,
}

pub type SourceItem = Flow<SourceBatch>;
