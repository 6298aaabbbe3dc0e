//! The step-feature store (score -> train): one Arrow IPC file, one row per trajectory, holding
//! the backbone's hidden vector at each step separator and the first-error label when the input
//! had one, and the arithmetic check's first false step when the check ran. Training reads it, so
//! the backbone runs once however many times the heads are trained.
//! Schema: `schemas/step-features.schema.json`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, FixedSizeListBuilder, Float32Builder, Int32Array, ListBuilder, RecordBatch,
    StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type, Schema, SchemaRef, UInt64Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

use crate::sink::SinkError;

pub fn schema(dim: usize) -> SchemaRef {
    let vector = Field::new(
        "item",
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            dim as i32,
        ),
        false,
    );
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::UInt64, false),
        Field::new("label", DataType::Int32, true),
        Field::new("step_features", DataType::List(Arc::new(vector)), false),
        Field::new(CHECK_COLUMN, DataType::Int32, true),
    ]))
}

/// The arithmetic check's verdict per trajectory: the first step stating a false equality, -1
/// for none, null where the check did not run. Optional on read: stores written before it have
/// no verdicts.
pub const CHECK_COLUMN: &str = "check_first_false";

/// One trajectory's features in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    pub source_file: String,
    pub source_row: u64,
    pub label: Option<i32>,
    /// `[steps, D]` row-major.
    pub features: Vec<f32>,
    pub steps: usize,
    /// The check's first false step (-1: none); `None`: the check did not run.
    pub check: Option<i32>,
}

pub struct FeatureWriter {
    writer: FileWriter<File>,
    schema: SchemaRef,
    dim: usize,
    tmp: PathBuf,
    path: PathBuf,
}

impl FeatureWriter {
    pub fn create(path: &Path, dim: usize) -> Result<Self, SinkError> {
        if dim == 0 {
            return Err(SinkError::at(path)("feature dimension 0".into()));
        }
        let tmp = crate::sink::atomic::temp_path(path, &crate::sink::atomic::process_tag());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| SinkError::at(parent)(e.to_string()))?;
        }
        let file = File::create(&tmp).map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
        let schema = schema(dim);
        let writer =
            FileWriter::try_new(file, &schema).map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
        Ok(Self {
            writer,
            schema,
            dim,
            tmp,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, rows: &[FeatureRow]) -> Result<(), SinkError> {
        let d = self.dim;
        let mut lists = ListBuilder::new(
            FixedSizeListBuilder::new(Float32Builder::new(), d as i32)
                .with_field(Arc::new(Field::new("item", DataType::Float32, false))),
        )
        .with_field(Arc::new(Field::new(
            "item",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                d as i32,
            ),
            false,
        )));
        for r in rows {
            if r.features.len() != r.steps * d {
                return Err(SinkError::at(&self.tmp)(format!(
                    "{} row {}: {} features for {} steps of dimension {d}",
                    r.source_file,
                    r.source_row,
                    r.features.len(),
                    r.steps
                )));
            }
            for step in r.features.chunks_exact(d) {
                lists.values().values().append_slice(step);
                lists.values().append(true);
            }
            lists.append(true);
        }
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.source_file.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.source_row),
                )),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.label).collect::<Vec<_>>(),
                )),
                Arc::new(lists.finish()),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.check).collect::<Vec<_>>(),
                )),
            ],
        )
        .map_err(|e| SinkError::at(&self.tmp)(e.to_string()))?;
        self.writer
            .write(&batch)
            .map_err(|e| SinkError::at(&self.tmp)(e.to_string()))
    }

    pub fn finish(mut self) -> Result<PathBuf, SinkError> {
        self.writer
            .finish()
            .map_err(|e| SinkError::at(&self.tmp)(e.to_string()))?;
        crate::sink::atomic::commit(&self.tmp, &self.path)?;
        Ok(self.path)
    }
}

/// A feature store that cannot be read, with its path.
#[derive(Debug, thiserror::Error)]
pub enum FeatureFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an Arrow IPC file: {source}")]
    NotIpc {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    /// An Arrow file of another kind: a column missing or of the wrong type.
    #[error("{path}: not a step-feature file: {detail}")]
    NotFeatures { path: PathBuf, detail: String },
    #[error(
        "{path}: row {row} ({source_file} row {source_row}): step {step} has a non-finite feature ({value})"
    )]
    NonFinite {
        path: PathBuf,
        row: usize,
        source_file: String,
        source_row: u64,
        step: usize,
        value: f32,
    },
}

/// Opens a feature store and checks its columns: its feature dimension (what a pipeline's
/// checks read before any work).
pub fn read_header(path: &Path) -> Result<usize, FeatureFileError> {
    open_checked(path).map(|(dim, _)| dim)
}

/// The store's feature dimension and a reader over its batches, its columns checked.
fn open_checked(path: &Path) -> Result<(usize, FileReader<File>), FeatureFileError> {
    let file = File::open(path).map_err(|source| FeatureFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let not_ipc = |source| FeatureFileError::NotIpc {
        path: path.to_path_buf(),
        source,
    };
    let not_features = |detail: String| FeatureFileError::NotFeatures {
        path: path.to_path_buf(),
        detail,
    };
    let reader = FileReader::try_new(file, None).map_err(not_ipc)?;
    let dim = match reader
        .schema()
        .field_with_name("step_features")
        .map(|f| f.data_type().clone())
    {
        Ok(DataType::List(f)) => match f.data_type() {
            DataType::FixedSizeList(_, d) => *d as usize,
            other => {
                return Err(not_features(format!(
                    "step_features items have type {other}, expected FixedSizeList<Float32>"
                )))
            }
        },
        _ => {
            return Err(not_features(
                "no step_features column of type List<FixedSizeList<Float32, D>>".into(),
            ))
        }
    };
    // a foreign Arrow file gets a clear error, never a panic in a downcast below
    let expected = schema(dim);
    for field in expected.fields() {
        if field.name() == CHECK_COLUMN && reader.schema().field_with_name(CHECK_COLUMN).is_err() {
            continue;
        }
        let found = reader.schema().field_with_name(field.name()).ok().cloned();
        if found.as_ref().map(|f| f.data_type()) != Some(field.data_type()) {
            return Err(not_features(format!(
                "column {:?} should be {}, found {}",
                field.name(),
                field.data_type(),
                found.map_or("nothing".to_string(), |f| f.data_type().to_string())
            )));
        }
    }
    Ok((dim, reader))
}

/// Reads a whole feature store, checking the feature dimension and that every value is finite.
pub fn read_features(path: &Path) -> Result<(usize, Vec<FeatureRow>), FeatureFileError> {
    let not_ipc = |source| FeatureFileError::NotIpc {
        path: path.to_path_buf(),
        source,
    };
    let (dim, reader) = open_checked(path)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(not_ipc)?;
        let column = |name: &str| batch.column_by_name(name).expect("checked above");
        let files = column("source_file").as_string::<i32>();
        let source_rows = column("source_row").as_primitive::<UInt64Type>();
        let labels = column("label").as_primitive::<Int32Type>();
        let lists = column("step_features").as_list::<i32>();
        let checks = batch
            .column_by_name(CHECK_COLUMN)
            .map(|c| c.as_primitive::<Int32Type>());
        for i in 0..batch.num_rows() {
            let steps = lists.value(i);
            let steps = steps.as_fixed_size_list();
            let values = steps.values().as_primitive::<Float32Type>();
            let start = steps.offset() * dim;
            let features = values.values()[start..start + steps.len() * dim].to_vec();
            if let Some(bad) = features.iter().position(|v| !v.is_finite()) {
                return Err(FeatureFileError::NonFinite {
                    path: path.to_path_buf(),
                    row: rows.len(),
                    source_file: files.value(i).to_string(),
                    source_row: source_rows.value(i),
                    step: bad / dim,
                    value: features[bad],
                });
            }
            rows.push(FeatureRow {
                source_file: files.value(i).to_string(),
                source_row: source_rows.value(i),
                label: (!labels.is_null(i)).then(|| labels.value(i)),
                steps: steps.len(),
                features,
                check: checks.and_then(|c| (!c.is_null(i)).then(|| c.value(i))),
            });
        }
    }
    Ok((dim, rows))
}
