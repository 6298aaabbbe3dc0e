//! Parquet part files: `DIR/<prefix>-00000.parquet`, ... A part is written as a hidden temporary
//! file and renamed when complete; a new part starts when the schema changes or it is full.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::SinkError;

pub struct PartWriter {
    dir: PathBuf,
    prefix: String,
    rows_per_part: usize,
    next_index: usize,
    open: Option<OpenPart>,
    written: Vec<PathBuf>,
}

struct OpenPart {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
}

impl PartWriter {
    pub fn new(dir: &Path, prefix: &str, rows_per_part: usize) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::at(dir)(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            rows_per_part: rows_per_part.max(1),
            next_index: 0,
            open: None,
            written: Vec::new(),
        })
    }

    /// Starts numbering at `index` (a resumed run continues after its committed parts).
    pub fn with_first_index(mut self, index: usize) -> Self {
        self.next_index = index;
        self
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let roll = match &self.open {
            Some(p) => p.schema != batch.schema() || p.rows >= self.rows_per_part,
            None => false,
        };
        if roll {
            self.finish_part()?;
        }
        if self.open.is_none() {
            let path = self
                .dir
                .join(format!("{}-{:05}.parquet", self.prefix, self.next_index));
            let tmp = super::atomic::temp_path(&path, &super::atomic::process_tag());
            self.next_index += 1;
            let file = File::create(&tmp).map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
            self.open = Some(OpenPart {
                writer,
                schema: batch.schema(),
                tmp,
                path,
                rows: 0,
            });
        }
        let part = self.open.as_mut().expect("opened above");
        part.writer
            .write(batch)
            .map_err(|e| SinkError::at(&part.tmp)(e.to_string()))?;
        part.rows += batch.num_rows();
        Ok(())
    }

    /// Closes the open part and renames it into place.
    pub fn finish_part(&mut self) -> Result<Option<PathBuf>, SinkError> {
        let Some(part) = self.open.take() else {
            return Ok(None);
        };
        part.writer
            .close()
            .map_err(|e| SinkError::at(&part.tmp)(e.to_string()))?;
        super::atomic::commit(&part.tmp, &part.path)?;
        self.written.push(part.path.clone());
        Ok(Some(part.path))
    }

    /// Closes everything; returns every part written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, SinkError> {
        self.finish_part()?;
        Ok(self.written)
    }
}

/// Writes `batches` as one Parquet file at `path`, atomically (temporary name, fsync, rename).
pub fn write_file(path: &Path, batches: &[RecordBatch]) -> Result<(), SinkError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| SinkError::at(path)("nothing to write".into()))?;
    super::atomic::create_parent(path)?;
    let tmp = super::atomic::temp_path(path, &super::atomic::process_tag());
    let file = File::create(&tmp).map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
    for b in batches {
        writer
            .write(b)
            .map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
    }
    writer
        .close()
        .map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
    super::atomic::commit(&tmp, path)
}
