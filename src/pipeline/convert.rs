//! `actprm convert` (and a pipeline file's jsonl / processbench source): labelled data as released
//! -> one Parquet file (id, problem, steps, label, then every other field of the records, as
//! Arrow infers it over all of them: nested objects as structs, arrays as lists). A record that
//! cannot be converted is kept with its file, line and reason in `OUTPUT.rejects.jsonl`, never
//! dropped.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::PipelineError;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::source::raw::{convert_file, ConvertedRecord, RawReject};

/// What a conversion wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub records: usize,
    pub rejected: Vec<Rejected>,
    /// Where the rejects are listed (absent when there are none).
    pub rejects_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl From<RawReject> for Rejected {
    fn from(r: RawReject) -> Self {
        Self {
            file: r.file,
            line: r.line,
            reason: r.reason,
        }
    }
}

/// Records per Arrow batch written (a few MB of text each).
const CONVERT_BATCH_ROWS: usize = 4096;

/// The rejects list beside `output`.
pub fn rejects_path(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rejects.jsonl", output.display()))
}

/// Converts `inputs` into the Parquet file `output` (written under a temporary name and renamed:
/// no other file in its folder is touched).
pub fn convert(inputs: &[PathBuf], output: &Path) -> Result<ConvertReport, PipelineError> {
    let mut records = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    for path in inputs {
        let (r, bad) = convert_file(path)?;
        records.extend(r);
        rejected.extend(bad.into_iter().map(Rejected::from));
    }
    if records.is_empty() {
        return Err(PipelineError::NothingConverted {
            rejected: rejected.len(),
        });
    }
    // batches of bounded size: one batch of a whole file would overflow Arrow's 32-bit string
    // offsets past 2 GiB of text
    let batches = with_other_fields(&records)?;
    crate::sink::parts::write_file(output, &batches)?;
    let list = rejects_path(output);
    let rejects_file = if rejected.is_empty() {
        let _ = std::fs::remove_file(&list);
        None
    } else {
        let mut text = String::new();
        for r in &rejected {
            text += &serde_json::to_string(r).unwrap_or_default();
            text.push('\n');
        }
        crate::sink::write_atomic(&list, text.as_bytes())?;
        Some(list)
    };
    Ok(ConvertReport {
        output: output.to_path_buf(),
        records: records.len(),
        rejected,
        rejects_file,
    })
}

/// The records as batches: the four converted columns, then the records' other fields. Their
/// types are inferred over every record; when some value does not fit them (a field that is a
/// number here and an object there), every other field is kept as its JSON text instead.
fn with_other_fields(records: &[ConvertedRecord]) -> Result<Vec<RecordBatch>, PipelineError> {
    let converted = |chunk: &[ConvertedRecord]| {
        crate::source::jsonl::to_record_batch(chunk.iter().map(|r| &r.trajectory))
    };
    // every field name, in the order first seen
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        for k in r.fields.as_object().into_iter().flat_map(|o| o.keys()) {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    if names.is_empty() {
        return Ok(records.chunks(CONVERT_BATCH_ROWS).map(converted).collect());
    }
    let objects = records.iter().map(|r| Ok(&r.fields));
    let typed: Result<Vec<RecordBatch>, String> = infer_json_schema_from_iterator(objects)
        .map_err(|e| e.to_string())
        .and_then(|inferred| {
            let inferred = Arc::new(inferred);
            records
                .chunks(CONVERT_BATCH_ROWS)
                .map(|chunk| join(converted(chunk), decode_fields(&inferred, chunk)?))
                .collect()
        });
    match typed {
        Ok(batches) => Ok(batches),
        Err(_) => records
            .chunks(CONVERT_BATCH_ROWS)
            .map(|chunk| join(converted(chunk), json_text_fields(&names, chunk)))
            .collect::<Result<_, _>>()
            .map_err(|message| PipelineError::Inconsistent {
                path: PathBuf::from("<convert>"),
                detail: message,
            }),
    }
}

fn decode_fields(schema: &SchemaRef, chunk: &[ConvertedRecord]) -> Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(chunk.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let values: Vec<&Value> = chunk.iter().map(|r| &r.fields).collect();
    decoder.serialize(&values).map_err(|e| e.to_string())?;
    decoder
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no rows".to_string())
}

/// Each field as its JSON text (null where the record lacks it).
fn json_text_fields(names: &[&str], chunk: &[ConvertedRecord]) -> RecordBatch {
    let fields: Vec<Field> = names
        .iter()
        .map(|name| Field::new(*name, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = names
        .iter()
        .map(|name| {
            Arc::new(StringArray::from_iter(
                chunk
                    .iter()
                    .map(|r| r.fields.get(*name).map(|v| v.to_string())),
            )) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("one text column per field, one row per record")
}

fn join(converted: RecordBatch, others: RecordBatch) -> Result<RecordBatch, String> {
    let mut fields: Vec<Arc<Field>> = converted.schema().fields().iter().cloned().collect();
    fields.extend(others.schema().fields().iter().cloned());
    let mut columns = converted.columns().to_vec();
    columns.extend(others.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

impl crate::report::Report for ConvertReport {
    fn table(&self) -> String {
        let rejected = match &self.rejects_file {
            Some(list) => format!(
                "; {} records rejected (listed in {})",
                self.rejected.len(),
                list.display()
            ),
            None => String::new(),
        };
        format!(
            "wrote {} trajectories to {}{rejected}\n",
            self.records,
            self.output.display()
        )
    }
}
