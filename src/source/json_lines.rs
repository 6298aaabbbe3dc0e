//! JSON Lines source (`.jsonl`, `.ndjson`): every field kept, as the Parquet source keeps every
//! column. Planning reads the file once: it infers the Arrow schema over every line (nested
//! objects become structs, arrays lists) and notes where each group of [`GROUP_ROWS`] rows starts.
//! Groups play the part of Parquet's row groups: a filter's units, a shard's share, what a resume
//! skips. A line that is not a JSON object, or does not fit the schema, is reported with its line
//! number as unreadable (one row), never silently dropped; blank lines are not rows.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::columns::{extract, ResolvedColumns};
use super::flow::{Flow, SourceBatch, SourceItem, Unreadable};

/// Rows per group (the unit of a filter run over a JSON Lines file).
pub const GROUP_ROWS: u64 = 4096;

/// What planning learned about a file.
#[derive(Debug, Clone)]
pub struct JsonLinesPlan {
    pub schema: SchemaRef,
    /// Byte offset and 1-based line number of each group's first row.
    pub group_starts: Vec<(u64, u64)>,
    pub group_rows: Vec<u64>,
}

/// Whether `path` is read as JSON Lines.
pub fn is_json_lines(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"))
}

/// One pass over the file: the schema of its objects and its groups.
pub fn plan_file(path: &Path) -> Result<JsonLinesPlan, String> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    let mut group_starts = Vec::new();
    let mut group_rows = Vec::new();
    let mut objects: Vec<Value> = Vec::new();
    let mut schema: Option<arrow::datatypes::Schema> = None;
    let (mut offset, mut line_no, mut rows) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    // schemas are inferred chunk by chunk and merged, so memory stays bounded
    let mut infer = |objects: &mut Vec<Value>| -> Result<(), String> {
        if objects.is_empty() {
            return Ok(());
        }
        let chunk = infer_json_schema_from_iterator(objects.drain(..).map(Ok::<_, _>))
            .map_err(|e| format!("inferring the schema: {e}"))?;
        schema = Some(match schema.take() {
            None => chunk,
            Some(s) => arrow::datatypes::Schema::try_merge([s, chunk])
                .map_err(|e| format!("the lines disagree on a field's type: {e}"))?,
        });
        Ok(())
    };
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())? as u64;
        if n == 0 {
            break;
        }
        line_no += 1;
        let start = offset;
        offset += n;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if rows % GROUP_ROWS == 0 {
            group_starts.push((start, line_no));
            group_rows.push(0);
        }
        rows += 1;
        *group_rows.last_mut().expect("a group was opened") += 1;
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&line) {
            objects.push(Value::Object(o));
            if objects.len() >= 1024 {
                infer(&mut objects)?;
            }
        }
    }
    infer(&mut objects)?;
    let schema = schema.ok_or_else(|| {
        if rows == 0 {
            "holds no JSON object (an empty file)".to_string()
        } else {
            "holds no JSON object on any line".to_string()
        }
    })?;
    Ok(JsonLinesPlan {
        schema: Arc::new(schema),
        group_starts,
        group_rows,
    })
}

/// Reads group `group` of a planned file; the same contract as the Parquet source's row group:
/// `Ok(continue?)` or `Err((rows already emitted, reason))`.
pub fn read_group(
    path: &Arc<PathBuf>,
    plan: &JsonLinesPlan,
    group: usize,
    batch_rows: usize,
    columns: &ResolvedColumns,
    group_first_row: u64,
    emit: &mut dyn FnMut(SourceItem) -> bool,
) -> Result<bool, (u64, String)> {
    let (offset, first_line) = plan.group_starts[group];
    let wanted = plan.group_rows[group];
    let mut file = File::open(path.as_ref()).map_err(|e| (0, e.to_string()))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| (0, e.to_string()))?;
    let mut reader = BufReader::new(file);
    let mut pending: Vec<Value> = Vec::new();
    let mut pending_first = group_first_row;
    let (mut done, mut line_no) = (0u64, first_line - 1);
    let mut line = Vec::new();
    while done < wanted {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| (done, e.to_string()))?;
        if n == 0 {
            return Err((
                done,
                "the file ended early (changed since it was planned?)".into(),
            ));
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = group_first_row + done;
        done += 1;
        match serde_json::from_slice::<Value>(&line) {
            Ok(value @ Value::Object(_)) => {
                if pending.is_empty() {
                    pending_first = row;
                }
                pending.push(value);
                if pending.len() >= batch_rows.max(1)
                    && !flush(path, plan, columns, &mut pending, pending_first, emit)
                {
                    return Ok(false);
                }
            }
            other => {
                if !flush(path, plan, columns, &mut pending, pending_first, emit) {
                    return Ok(false);
                }
                let reason = match other {
                    Err(e) => format!("line {line_no}: not JSON ({e})"),
                    Ok(v) => format!(
                        "line {line_no}: a JSON {} where an object belongs",
                        kind(&v)
                    ),
                };
                if !emit(unreadable_row(path, row, reason)) {
                    return Ok(false);
                }
            }
        }
    }
    Ok(flush(
        path,
        plan,
        columns,
        &mut pending,
        pending_first,
        emit,
    ))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unreadable_row(path: &Arc<PathBuf>, row: u64, reason: String) -> SourceItem {
    Flow::Unreadable(Unreadable {
        path: path.clone(),
        first_row: Some(row),
        rows: 1,
        reason,
    })
}

/// Decodes `values` (consecutive rows from `first_row`) and emits them; a row that does not fit
/// the schema is found by decoding one row at a time and reported on its own.
fn flush(
    path: &Arc<PathBuf>,
    plan: &JsonLinesPlan,
    columns: &ResolvedColumns,
    values: &mut Vec<Value>,
    first_row: u64,
    emit: &mut dyn FnMut(SourceItem) -> bool,
) -> bool {
    if values.is_empty() {
        return true;
    }
    let rows: Vec<Value> = std::mem::take(values);
    match decode(&plan.schema, &rows) {
        Ok(batch) => emit_batch(path, columns, batch, first_row, emit),
        Err(_) => {
            // the slow path, only when some row does not fit: each row decoded and emitted on
            // its own, the misfits reported with their reason
            for (i, value) in rows.into_iter().enumerate() {
                let row = first_row + i as u64;
                let go_on = match decode(&plan.schema, std::slice::from_ref(&value)) {
                    Ok(batch) => emit_batch(path, columns, batch, row, emit),
                    Err(reason) => emit(unreadable_row(
                        path,
                        row,
                        format!("row {row}: does not fit the file's schema: {reason}"),
                    )),
                };
                if !go_on {
                    return false;
                }
            }
            true
        }
    }
}

fn decode(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(rows).map_err(|e| e.to_string())?;
    decoder
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no rows decoded".to_string())
}

fn emit_batch(
    path: &Arc<PathBuf>,
    columns: &ResolvedColumns,
    batch: RecordBatch,
    first_row: u64,
    emit: &mut dyn FnMut(SourceItem) -> bool,
) -> bool {
    let rows = match extract(batch.columns(), columns) {
        Ok(rows) => rows,
        Err(reason) => {
            return emit(Flow::Unreadable(Unreadable {
                path: path.clone(),
                first_row: Some(first_row),
                rows: batch.num_rows() as u64,
                reason,
            }))
        }
    };
    emit(Flow::Batch(SourceBatch {
        path: path.clone(),
        first_row,
        batch,
        rows,
    }))
}
