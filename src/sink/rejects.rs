//! The rejects output: rows that could not be scored keep all their original columns plus
//! `reject_file`, `reject_row`, `reject_column` and `reject_reason` (Parquet parts in
//! `DIR/rejects/`); unreadable files and row groups are listed in `DIR/rejects/unreadable.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Field, Schema};

use super::{PartWriter, SinkError};

pub struct RejectSink {
    dir: PathBuf,
    parts: Option<PartWriter>,
    unreadable: Vec<serde_json::Value>,
}

/// One rejected row: its index in the batch and why.
pub struct RejectedRow {
    pub batch_row: usize,
    pub file_row: u64,
    pub column: String,
    pub reason: String,
}

impl RejectSink {
    pub fn new(out: &Path) -> Self {
        Self {
            dir: out.join("rejects"),
            parts: None,
            unreadable: Vec::new(),
        }
    }

    pub fn rows(
        &mut self,
        file: &Path,
        batch: &RecordBatch,
        rejected: &[RejectedRow],
    ) -> Result<(), SinkError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let out = rejected_rows(file, batch, rejected)?;
        if self.parts.is_none() {
            self.parts = Some(PartWriter::new(&self.dir, "rejects", 100_000)?);
        }
        self.parts.as_mut().expect("created above").write(&out)
    }

    /// Lists an unreadable file or row group (its `Unreadable::record`).
    pub fn unreadable(&mut self, record: serde_json::Value) {
        self.unreadable.push(record);
    }

    pub fn finish(self) -> Result<(), SinkError> {
        if let Some(parts) = self.parts {
            parts.finish()?;
        }
        if !self.unreadable.is_empty() {
            let path = self.dir.join("unreadable.jsonl");
            let mut text = Vec::new();
            for v in &self.unreadable {
                writeln!(text, "{v}").expect("writing to a Vec");
            }
            super::write_atomic(&path, &text)?;
        }
        Ok(())
    }
}

/// Rejected rows with their original columns plus `reject_file`, `reject_row`, `reject_column`
/// and `reject_reason`.
pub fn rejected_rows(
    file: &Path,
    batch: &RecordBatch,
    rejected: &[RejectedRow],
) -> Result<RecordBatch, SinkError> {
    let indices =
        arrow::array::UInt32Array::from_iter_values(rejected.iter().map(|r| r.batch_row as u32));
    let rows = arrow::compute::take_record_batch(batch, &indices)
        .map_err(|e| SinkError::at(file)(e.to_string()))?;
    let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    let n = rejected.len();
    let mut add = |name: &str, array: ArrayRef| {
        fields.push(Arc::new(Field::new(name, array.data_type().clone(), false)));
        columns.push(array);
    };
    add(
        "reject_file",
        Arc::new(StringArray::from(vec![file.display().to_string(); n])),
    );
    add(
        "reject_row",
        Arc::new(UInt64Array::from_iter_values(
            rejected.iter().map(|r| r.file_row),
        )),
    );
    add(
        "reject_column",
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.column.as_str()),
        )),
    );
    add(
        "reject_reason",
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.reason.as_str()),
        )),
    );
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SinkError::at(file)(e.to_string()))
}
