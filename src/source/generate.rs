//! A generator of large realistic corpora for tests and benchmarks: real trajectories copied or
//! recombined (one record's problem with another's steps, labels dropped) into many Parquet
//! files, written row group by row group so memory stays flat at any size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use super::jsonl::LabelledTrajectory;
use super::SourceError;
use crate::rng::NormalRng;

pub struct GenerateSpec {
    pub rows: u64,
    pub files: usize,
    pub row_group_rows: usize,
    pub seed: u64,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("problem", DataType::Utf8, false),
        super::steps_field(),
        Field::new("label", DataType::Int32, true),
    ]))
}

/// Draws from the labelled files `from` (JSON Lines / ProcessBench JSON) into `out`.
pub fn generate_from_files(
    from: &[PathBuf],
    out: &Path,
    spec: &GenerateSpec,
) -> Result<Vec<PathBuf>, SourceError> {
    crate::limits::at_least("files", spec.files, 1)?;
    crate::limits::at_least("row_group_rows", spec.row_group_rows, 1)?;
    let mut records = Vec::new();
    for f in from {
        records.extend(super::jsonl::read_labelled(f)?);
    }
    generate(&records, out, spec)
}

/// Writes `spec.files` files `corpus-NNNNN.parquet` into `out`; returns their paths.
pub fn generate(
    records: &[LabelledTrajectory],
    out: &Path,
    spec: &GenerateSpec,
) -> Result<Vec<PathBuf>, SourceError> {
    let err = |file: &Path, e: String| SourceError::File {
        file: file.to_path_buf(),
        message: e,
    };
    if records.is_empty() {
        return Err(err(out, "no records to generate from".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| err(out, e.to_string()))?;
    let mut rng = NormalRng::new(spec.seed);
    let files = spec.files.max(1) as u64;
    let mut paths = Vec::new();
    let mut next_id = 0u64;
    for f in 0..files {
        let rows_here = spec.rows / files + u64::from(f < spec.rows % files);
        let path = out.join(format!("corpus-{f:05}.parquet"));
        let tmp = crate::sink::atomic::temp_path(&path, &crate::sink::atomic::process_tag());
        let file = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e.to_string()))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(spec.row_group_rows.max(1)))
            .build();
        let mut writer = ArrowWriter::try_new(file, schema(), Some(props))
            .map_err(|e| err(&tmp, e.to_string()))?;
        let mut left = rows_here;
        while left > 0 {
            let n = left.min(spec.row_group_rows.max(1) as u64);
            let (mut id, mut source, mut problem, mut label) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
                Int32Builder::new(),
            );
            let mut steps = ListBuilder::new(StringBuilder::new()).with_field(super::step_item());
            for _ in 0..n {
                let pick = |rng: &mut NormalRng| {
                    &records
                        [((rng.next_unit() * records.len() as f64) as usize).min(records.len() - 1)]
                };
                let a = pick(&mut rng);
                let recombine = rng.next_unit() < 0.5;
                let b = if recombine { pick(&mut rng) } else { a };
                id.append_value(format!("gen-{next_id}"));
                next_id += 1;
                source.append_value(if recombine { "recombined" } else { "copy" });
                problem.append_value(&a.problem);
                for s in &b.steps {
                    steps.values().append_value(s);
                }
                steps.append(true);
                label.append_option(if recombine { None } else { a.label });
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(id.finish()),
                Arc::new(source.finish()),
                Arc::new(problem.finish()),
                Arc::new(steps.finish()),
                Arc::new(label.finish()),
            ];
            let batch =
                RecordBatch::try_new(schema(), columns).map_err(|e| err(&tmp, e.to_string()))?;
            writer.write(&batch).map_err(|e| err(&tmp, e.to_string()))?;
            writer.flush().map_err(|e| err(&tmp, e.to_string()))?;
            left -= n;
        }
        writer.close().map_err(|e| err(&tmp, e.to_string()))?;
        crate::sink::atomic::commit(&tmp, &path).map_err(|e| err(&path, e.to_string()))?;
        paths.push(path);
    }
    Ok(paths)
}
