//! Part files: `DIR/<prefix>-00000.<ext>`, ... in one [`DataFormat`]. A part is written under a
//! hidden temporary name and renamed when complete; a new part starts when the schema changes or
//! it is full. In the Hub's layout (`hf_dataset`) the parts are renamed once more when the run
//! ends, to `train-0000i-of-0000n.parquet`, since n is known only then.

use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;

use super::format::{DataFile, DataFormat};
use super::SinkError;

pub struct PartWriter {
    dir: PathBuf,
    prefix: String,
    format: DataFormat,
    rows_per_part: usize,
    next_index: usize,
    open: Option<OpenPart>,
    /// Every part renamed into place, with its rows.
    written: Vec<(PathBuf, u64)>,
}

struct OpenPart {
    file: DataFile,
    path: PathBuf,
}

impl PartWriter {
    /// Parquet parts `<prefix>-*.parquet` in `dir`.
    pub fn new(dir: &Path, prefix: &str, rows_per_part: usize) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::at(dir)(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            format: DataFormat::Parquet,
            rows_per_part: rows_per_part.max(1),
            next_index: 0,
            open: None,
            written: Vec::new(),
        })
    }

    /// A run's data parts in `output`, where and as `format` puts them.
    pub fn data(
        output: &Path,
        format: DataFormat,
        rows_per_part: usize,
    ) -> Result<Self, SinkError> {
        let (folder, prefix) = format.parts_at();
        Ok(Self::new(&output.join(folder), prefix, rows_per_part)?.with_format(format))
    }

    /// Writes the parts as `format` (parts of one run, numbered as they come: the Hub's layout
    /// renames them at `finish`).
    pub fn with_format(mut self, format: DataFormat) -> Self {
        self.format = format;
        self
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
            Some(p) => {
                *p.file.schema() != batch.schema() || p.file.rows() >= self.rows_per_part as u64
            }
            None => false,
        };
        if roll {
            self.finish_part()?;
        }
        let part = match &mut self.open {
            Some(part) => part,
            None => {
                let path = self.dir.join(format!(
                    "{}-{:05}.{}",
                    self.prefix,
                    self.next_index,
                    self.format.extension()
                ));
                let tmp = super::atomic::temp_path(&path, &super::atomic::process_tag());
                self.next_index += 1;
                let file = DataFile::create(self.format, tmp, batch.schema())?;
                self.open.insert(OpenPart { file, path })
            }
        };
        part.file.write(batch)
    }

    /// Closes the open part and renames it into place.
    pub fn finish_part(&mut self) -> Result<Option<PathBuf>, SinkError> {
        let Some(part) = self.open.take() else {
            return Ok(None);
        };
        let rows = part.file.commit(&part.path)?;
        self.written.push((part.path.clone(), rows));
        Ok(Some(part.path))
    }

    /// Closes everything; returns every part written (in the Hub's layout, under its final
    /// `-of-` names).
    pub fn finish(self) -> Result<Vec<PathBuf>, SinkError> {
        Ok(self.finish_counted()?.into_iter().map(|(p, _)| p).collect())
    }

    /// [`PartWriter::finish`], with each part's rows (what a commit record promises).
    pub fn finish_counted(mut self) -> Result<Vec<(PathBuf, u64)>, SinkError> {
        self.finish_part()?;
        if self.format != DataFormat::HfDataset {
            return Ok(self.written);
        }
        let n = self.written.len();
        let mut renamed = Vec::with_capacity(n);
        for (i, (part, rows)) in self.written.iter().enumerate() {
            let name = format!(
                "{}-{i:05}-of-{n:05}.{}",
                self.prefix,
                self.format.extension()
            );
            let to = self.dir.join(name);
            std::fs::rename(part, &to).map_err(|e| SinkError::at(part)(e.to_string()))?;
            renamed.push((to, *rows));
        }
        super::atomic::sync_dir(&self.dir)?;
        Ok(renamed)
    }
}

/// `path` as a run's records name it: relative to its folder `base`.
pub fn relative_name(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Finishes the part writers of every data sink of a run (its own folder `own` first); returns
/// the run's own parts, relative to `own` (what its summary lists).
pub fn finish_all(writers: Vec<PartWriter>, own: &Path) -> Result<Vec<String>, SinkError> {
    let mut names = Vec::new();
    for (i, writer) in writers.into_iter().enumerate() {
        let written = writer.finish()?;
        if i == 0 {
            names = written.iter().map(|p| relative_name(p, own)).collect();
        }
    }
    Ok(names)
}

/// Writes `batches` as one Parquet file at `path`, atomically (temporary name, fsync, rename).
pub fn write_file(path: &Path, batches: &[RecordBatch]) -> Result<(), SinkError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| SinkError::at(path)("nothing to write".into()))?;
    let tmp = super::atomic::temp_path(path, &super::atomic::process_tag());
    let mut file = DataFile::create(DataFormat::Parquet, tmp, schema)?;
    for b in batches {
        file.write(b)?;
    }
    file.commit(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn rows(n: i32) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("x", DataType::Int32, false)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int32Array::from_iter_values(0..n))],
        )
        .unwrap()
    }

    #[test]
    fn the_hub_layout_names_parts_with_their_count_once_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartWriter::data(dir.path(), DataFormat::HfDataset, 4).unwrap();
        for _ in 0..3 {
            parts.write(&rows(3)).unwrap();
        }
        let written = parts.finish().unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ]
        );
        let total: u64 = written
            .iter()
            .map(|p| super::super::format::rows_in(p).unwrap())
            .sum();
        assert_eq!(total, 9);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 2, "no temporary or pre-rename file stays");
    }

    #[test]
    fn json_lines_parts_roll_at_the_row_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartWriter::data(dir.path(), DataFormat::Jsonl, 5).unwrap();
        parts.write(&rows(5)).unwrap();
        parts.write(&rows(2)).unwrap();
        let written = parts.finish().unwrap();
        assert_eq!(
            written,
            [
                dir.path().join("part-00000.jsonl"),
                dir.path().join("part-00001.jsonl")
            ]
        );
        let text = std::fs::read_to_string(&written[1]).unwrap();
        assert_eq!(text, "{\"x\":0}\n{\"x\":1}\n");
    }
}
