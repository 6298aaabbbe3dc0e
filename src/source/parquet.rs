//! Parquet source: validates every file's schema before work starts, then reads row group by row
//! group so a corrupt row group costs only its own rows (reported, never silently dropped).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::columns::{extract, ColumnMapping, ResolvedColumns};
use super::{RowReject, SourceError, Trajectory};

/// A file that passed schema validation (or could not be opened at all).
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub path: Arc<PathBuf>,
    /// `Err` = the file is unreadable; its reason goes to the rejects output.
    pub columns: Result<ResolvedColumns, String>,
    pub rows: u64,
    pub row_groups: usize,
}

/// Something the reader produced.
pub enum SourceItem {
    Batch {
        path: Arc<PathBuf>,
        /// Row number (0-based, within the file) of the batch's first row.
        first_row: u64,
        batch: RecordBatch,
        rows: Vec<Result<Trajectory, RowReject>>,
    },
    /// A whole file or row group that could not be decoded.
    Unreadable { path: Arc<PathBuf>, first_row: Option<u64>, rows: u64, reason: String },
}

/// Opens every file's footer and checks the columns. Missing or mistyped columns are fatal (a
/// configuration mistake); a file whose footer cannot be read is planned as unreadable.
pub fn plan(files: &[PathBuf], mapping: &ColumnMapping) -> Result<Vec<PlannedFile>, SourceError> {
    files
        .iter()
        .map(|path| {
            let opened = File::open(path)
                .map_err(|e| e.to_string())
                .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| format!("not a readable Parquet file: {e}")));
            let path_arc = Arc::new(path.clone());
            match opened {
                Err(reason) => Ok(PlannedFile { path: path_arc, columns: Err(reason), rows: 0, row_groups: 0 }),
                Ok(builder) => {
                    let columns = mapping.resolve(builder.schema(), path)?;
                    let meta = builder.metadata();
                    Ok(PlannedFile {
                        path: path_arc,
                        columns: Ok(columns),
                        rows: meta.file_metadata().num_rows().max(0) as u64,
                        row_groups: meta.num_row_groups(),
                    })
                }
            }
        })
        .collect()
}

/// Reads one planned file in batches of `batch_rows`, calling `emit` for each item; stops early
/// when `emit` returns false (the consumer has gone away).
pub fn read_file(file: &PlannedFile, batch_rows: usize, emit: &mut dyn FnMut(SourceItem) -> bool) {
    let columns = match &file.columns {
        Ok(c) => c,
        Err(reason) => {
            emit(SourceItem::Unreadable { path: file.path.clone(), first_row: None, rows: 0, reason: reason.clone() });
            return;
        }
    };
    let mut first_row = 0u64;
    for group in 0..file.row_groups {
        let group_rows = match open(&file.path) {
            Ok(b) => b.metadata().row_group(group).num_rows().max(0) as u64,
            Err(_) => 0,
        };
        let result = read_group(&file.path, group, batch_rows, columns, first_row, emit);
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err((done, reason)) => {
                let rest = group_rows.saturating_sub(done);
                let item = SourceItem::Unreadable {
                    path: file.path.clone(),
                    first_row: Some(first_row + done),
                    rows: rest,
                    reason: format!("row group {group}: {reason}"),
                };
                if !emit(item) {
                    return;
                }
            }
        }
        first_row += group_rows;
    }
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())
}

/// Ok(continue?) or Err((rows already emitted from this group, reason)).
fn read_group(
    path: &Arc<PathBuf>,
    group: usize,
    batch_rows: usize,
    columns: &ResolvedColumns,
    group_first_row: u64,
    emit: &mut dyn FnMut(SourceItem) -> bool,
) -> Result<bool, (u64, String)> {
    let reader = open(path)
        .and_then(|b| b.with_row_groups(vec![group]).with_batch_size(batch_rows).build().map_err(|e| e.to_string()))
        .map_err(|e| (0, e))?;
    let mut done = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| (done, e.to_string()))?;
        let rows = extract(batch.columns(), columns).map_err(|e| (done, e))?;
        let n = batch.num_rows() as u64;
        if !emit(SourceItem::Batch { path: path.clone(), first_row: group_first_row + done, batch, rows }) {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}
