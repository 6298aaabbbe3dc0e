//! Parquet source: validates every file's schema before work starts, then reads row group by row
//! group so a corrupt row group costs only its own rows (reported, never silently dropped).
//! JSON Lines files are planned and read through the same type ([`super::json_lines`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::columns::{extract, ColumnMapping, ResolvedColumns};
pub use super::flow::SourceItem;
use super::flow::{Flow, GroupEnd, SourceBatch, Unreadable};
use super::json_lines::{is_json_lines, plan_file, JsonLinesPlan};
use super::SourceError;

/// A file that passed schema validation (or could not be opened at all).
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub path: Arc<PathBuf>,
    /// `Err` = the file is unreadable; its reason goes to the rejects output.
    pub columns: Result<ResolvedColumns, String>,
    pub rows: u64,
    pub row_groups: usize,
    /// Rows of each row group (from the footer).
    pub group_rows: Vec<u64>,
    /// Row groups to read; `None` = all (a filter shard or a resumed run reads fewer).
    pub groups: Option<Vec<usize>>,
    /// Set for a JSON Lines file: its schema and groups of lines (its "row groups").
    pub json_lines: Option<Arc<JsonLinesPlan>>,
}

/// Opens every file's footer and checks the columns. Missing or mistyped columns are fatal (a
/// configuration mistake); a file whose footer cannot be read is planned as unreadable.
pub fn plan(files: &[PathBuf], mapping: &ColumnMapping) -> Result<Vec<PlannedFile>, SourceError> {
    let planned = files
        .iter()
        .map(|path| {
            if is_json_lines(path) {
                return plan_json_lines(path, mapping);
            }
            let opened = open_reader(path).map_err(|e| format!("not a readable Parquet file: {e}"));
            let path_arc = Arc::new(path.clone());
            match opened {
                Err(reason) => Ok(PlannedFile {
                    path: path_arc,
                    columns: Err(reason),
                    rows: 0,
                    row_groups: 0,
                    group_rows: vec![],
                    groups: None,
                    json_lines: None,
                }),
                Ok(builder) => {
                    let columns = mapping.resolve(builder.schema(), path)?;
                    let meta = builder.metadata();
                    Ok(PlannedFile {
                        path: path_arc,
                        columns: Ok(columns),
                        rows: meta.file_metadata().num_rows().max(0) as u64,
                        row_groups: meta.num_row_groups(),
                        group_rows: meta
                            .row_groups()
                            .iter()
                            .map(|g| g.num_rows().max(0) as u64)
                            .collect(),
                        groups: None,
                        json_lines: None,
                    })
                }
            }
        })
        .collect::<Result<Vec<PlannedFile>, SourceError>>()?;
    Ok(planned)
}

/// Plans a JSON Lines file: one pass for its schema and groups; a file that cannot be read (or
/// holds no object) is planned as unreadable, as a Parquet file with a broken footer is.
fn plan_json_lines(path: &Path, mapping: &ColumnMapping) -> Result<PlannedFile, SourceError> {
    let path_arc = Arc::new(path.to_path_buf());
    match plan_file(path) {
        Err(reason) => Ok(PlannedFile {
            path: path_arc,
            columns: Err(match super::json_lines::framing(path) {
                Some(super::json_lines::Framing::Array) => {
                    format!("not a readable JSON file: {reason}")
                }
                _ => format!("not a readable JSON Lines file: {reason}"),
            }),
            rows: 0,
            row_groups: 0,
            group_rows: vec![],
            groups: None,
            json_lines: None,
        }),
        Ok(plan) => Ok(PlannedFile {
            path: path_arc,
            columns: Ok(mapping.resolve(&plan.schema, path)?),
            rows: plan.group_rows.iter().sum(),
            row_groups: plan.group_rows.len(),
            group_rows: plan.group_rows.clone(),
            groups: None,
            json_lines: Some(Arc::new(plan)),
        }),
    }
}

/// A run whose every input file is unreadable would quarantine them all and report success
/// with no row: refuse it, naming the first file and why.
pub fn refuse_if_none_readable(planned: &[PlannedFile]) -> Result<(), SourceError> {
    if let Some(Err(reason)) = planned
        .iter()
        .all(|f| f.columns.is_err())
        .then(|| planned.first().map(|f| &f.columns))
        .flatten()
    {
        return Err(SourceError::File {
            file: planned[0].path.as_ref().clone(),
            message: format!(
                "{reason}; none of the {} input file(s) could be read",
                planned.len()
            ),
        });
    }
    Ok(())
}

/// Reads one planned file in batches of `batch_rows`, calling `emit` for each item; stops early
/// when `emit` returns false (the consumer has gone away).
pub fn read_file(file: &PlannedFile, batch_rows: usize, emit: &mut dyn FnMut(SourceItem) -> bool) {
    let columns = match &file.columns {
        Ok(c) => c,
        Err(reason) => {
            emit(Flow::Unreadable(Unreadable {
                path: file.path.clone(),
                first_row: None,
                rows: 0,
                reason: reason.clone(),
            }));
            return;
        }
    };
    let all: Vec<usize> = (0..file.row_groups).collect();
    for &group in file.groups.as_ref().unwrap_or(&all) {
        let first_row: u64 = file.group_rows[..group].iter().sum();
        let group_rows = file.group_rows[group];
        let result = match &file.json_lines {
            Some(plan) => super::json_lines::read_group(
                &file.path, plan, group, batch_rows, columns, first_row, emit,
            ),
            None => read_group(&file.path, group, batch_rows, columns, first_row, emit),
        };
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err((done, reason)) => {
                let rest = group_rows.saturating_sub(done);
                let item = Flow::Unreadable(Unreadable {
                    path: file.path.clone(),
                    first_row: Some(first_row + done),
                    rows: rest,
                    reason: format!("row group {group}: {reason}"),
                });
                if !emit(item) {
                    return;
                }
            }
        }
        if !emit(Flow::GroupEnd(GroupEnd {
            path: file.path.clone(),
            group,
        })) {
            return;
        }
    }
}

/// The rows a planned file will emit (its selected row groups).
pub fn planned_rows(file: &PlannedFile) -> u64 {
    match &file.groups {
        None => file.rows,
        Some(groups) => groups.iter().map(|&g| file.group_rows[g]).sum(),
    }
}

/// Opens a Parquet file's footer. A damaged footer is an error, never a crash: the Arrow schema
/// embedded in the footer is decoded by code that panics on some corruptions (arrow-ipc 59:
/// "Type NONE not supported"), so a panic there is caught and reported as the file's reason.
pub fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    guarded("damaged footer", || {
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())
    })
}

/// Runs a Parquet decoding step, turning a panic in the decoder (parquet 59 panics on some
/// corrupted column chunk offsets: "column start and length should not be negative") into the
/// reason the rows are unreadable. Only decoding goes through here, never the caller's callbacks,
/// so a stage that really crashes still fails the run.
fn guarded<T>(what: &str, step: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "{what}: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the reader failed")
        )),
    }
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
    let (mut reader, schema) = open_reader(path)
        .and_then(|b| {
            let schema = b.schema().clone();
            guarded("damaged row group", || {
                b.with_row_groups(vec![group])
                    .with_batch_size(batch_rows)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map(|r| (r, schema))
        })
        .map_err(|e| (0, e))?;
    let mut done = 0u64;
    loop {
        let next = guarded("damaged row group", || Ok(reader.next())).map_err(|e| (done, e))?;
        let Some(batch) = next else { break };
        // the reader's batches lack the file's schema metadata (e.g. a Hub data set's
        // `huggingface` features); the builder's schema has it, and outputs keep it
        let batch = batch
            .and_then(|b| b.with_schema(schema.clone()))
            .map_err(|e| (done, e.to_string()))?;
        let rows = extract(batch.columns(), columns).map_err(|e| (done, e))?;
        let n = batch.num_rows() as u64;
        if !emit(Flow::Batch(SourceBatch {
            path: path.clone(),
            first_row: group_first_row + done,
            batch,
            rows,
        })) {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}
