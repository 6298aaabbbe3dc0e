//! JSON record source: JSON Lines (`.jsonl`, `.ndjson`: one record per line) and JSON arrays of
//! records (`.json`, as ProcessBench ships), every field kept, as the Parquet source keeps every
//! column. Planning reads the file once: it infers the Arrow schema over every record (nested
//! objects become structs, arrays lists) and notes where each group of [`GROUP_ROWS`] records
//! starts. Groups play the part of Parquet's row groups: a filter's units, a shard's share, what
//! a resume skips. A record that is not a JSON object, or does not fit the schema, is reported
//! with its line (element) number as unreadable (one row), never silently dropped; blank lines
//! are not rows. Both framings stream: an array is split into its elements by a scanner that
//! tracks strings and nesting, so memory stays bounded whatever the file's size.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom};
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
    pub framing: Framing,
}

/// How a file's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One record per line (`.jsonl`, `.ndjson`).
    Lines,
    /// One JSON array of records (`.json`).
    Array,
}

impl Framing {
    /// What a record's number counts, for messages.
    fn noun(self) -> &'static str {
        match self {
            Framing::Lines => "line",
            Framing::Array => "element",
        }
    }
}

/// How `path` is read as JSON records, by its extension; `None` for any other file.
pub fn framing(path: &Path) -> Option<Framing> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" | "ndjson" => Some(Framing::Lines),
        "json" => Some(Framing::Array),
        _ => None,
    }
}

/// Whether `path` is read as JSON records (Lines or an array).
pub fn is_json_lines(path: &Path) -> bool {
    framing(path).is_some()
}

/// The records of a file, one after another: each one's bytes, start offset and number (its
/// 1-based line, or element index for an array).
struct Records {
    reader: BufReader<File>,
    framing: Framing,
    /// Bytes consumed so far (the offset of the next unread byte).
    offset: u64,
    /// The number of the last record read (lines count blank ones too).
    number: u64,
    /// Array framing: the opening `[` was read.
    opened: bool,
}

impl Records {
    fn open(path: &Path, framing: Framing) -> std::io::Result<Self> {
        Ok(Self {
            reader: BufReader::new(File::open(path)?),
            framing,
            offset: 0,
            number: 0,
            opened: false,
        })
    }

    /// Continues at a record that starts at `offset` (a group's start): its number is `number`.
    fn resume(path: &Path, framing: Framing, offset: u64, number: u64) -> std::io::Result<Self> {
        let mut records = Self::open(path, framing)?;
        records.reader.seek(SeekFrom::Start(offset))?;
        records.offset = offset;
        records.number = number - 1;
        records.opened = true;
        Ok(records)
    }

    /// The next non-blank record into `out`: `(start offset, number)`, or `None` at the end.
    fn next(&mut self, out: &mut Vec<u8>) -> std::io::Result<Option<(u64, u64)>> {
        out.clear();
        match self.framing {
            Framing::Lines => loop {
                out.clear();
                let start = self.offset;
                let n = self.reader.read_until(b'\n', out)? as u64;
                if n == 0 {
                    return Ok(None);
                }
                self.offset += n;
                self.number += 1;
                if !out.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Some((start, self.number)));
                }
            },
            Framing::Array => self.next_element(out),
        }
    }

    fn next_element(&mut self, out: &mut Vec<u8>) -> std::io::Result<Option<(u64, u64)>> {
        let broken =
            |message: &str| std::io::Error::new(ErrorKind::InvalidData, message.to_string());
        // whitespace, the opening bracket, separators, or the closing bracket
        loop {
            let Some(&byte) = self.reader.fill_buf()?.first() else {
                return if self.opened {
                    Err(broken("the array is not closed (a truncated file?)"))
                } else {
                    Ok(None)
                };
            };
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'[' if !self.opened => self.opened = true,
                b',' if self.opened => {}
                b']' if self.opened => return Ok(None),
                _ if !self.opened => {
                    return Err(broken(
                        "is not a JSON array of records (a .json file holds [{...}, ...]; one \
                         record per line is a .jsonl file)",
                    ))
                }
                _ => break,
            }
            self.reader.consume(1);
            self.offset += 1;
        }
        let start = self.offset;
        self.number += 1;
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                return Err(broken("the array ends inside a record (a truncated file?)"));
            }
            let mut end = None;
            for (i, &byte) in buffer.iter().enumerate() {
                if in_string {
                    match (escaped, byte) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => {
                            in_string = false;
                            if depth == 0 {
                                end = Some(i + 1);
                                break;
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                match byte {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(buffer.len());
            out.extend_from_slice(&buffer[..take]);
            self.reader.consume(take);
            self.offset += take as u64;
            if end.is_some() {
                return Ok(Some((start, self.number)));
            }
        }
    }
}

/// One pass over the file: the schema of its objects and its groups.
pub fn plan_file(path: &Path) -> Result<JsonLinesPlan, String> {
    let framing = framing(path).unwrap_or(Framing::Lines);
    let mut records = Records::open(path, framing).map_err(|e| e.to_string())?;
    let mut group_starts = Vec::new();
    let mut group_rows = Vec::new();
    let mut objects: Vec<Value> = Vec::new();
    let mut schema: Option<arrow::datatypes::Schema> = None;
    let mut rows = 0u64;
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
    while let Some((start, number)) = records.next(&mut line).map_err(|e| e.to_string())? {
        if rows.is_multiple_of(GROUP_ROWS) {
            group_starts.push((start, number));
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
        framing,
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
    let (offset, first_number) = plan.group_starts[group];
    let wanted = plan.group_rows[group];
    let mut records = Records::resume(path, plan.framing, offset, first_number)
        .map_err(|e| (0, e.to_string()))?;
    let mut pending: Vec<Value> = Vec::new();
    let mut pending_first = group_first_row;
    let mut done = 0u64;
    let mut line = Vec::new();
    let noun = plan.framing.noun();
    while done < wanted {
        let Some((_, line_no)) = records.next(&mut line).map_err(|e| (done, e.to_string()))? else {
            return Err((
                done,
                "the file ended early (changed since it was planned?)".into(),
            ));
        };
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
                    Err(e) => format!("{noun} {line_no}: not JSON ({e})"),
                    Ok(v) => format!(
                        "{noun} {line_no}: a JSON {} where an object belongs",
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
