//! The file formats data rows are written in (`--format`, a pipeline sink's `type`), and the one
//! writer of a data file: rows stream in as record batches, the file is written under its
//! temporary name and renamed into place when complete (see [`super::atomic`]).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::SinkError;

/// How an output's data rows are stored. Rejects and run records are Parquet and JSON whatever
/// the format, and every output folder gets a dataset card naming its data files, so
/// `datasets.load_dataset(OUT)` reads exactly the data rows in each format.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum DataFormat {
    /// Parquet part files (zstd): `part-00000.parquet`, ...
    #[default]
    Parquet,
    /// JSON Lines part files, one object per row with every column (lists and structs nested):
    /// `part-00000.jsonl`, ...
    Jsonl,
    /// Arrow IPC files (the file format, which DataFusion, pyarrow, polars and `datasets` read):
    /// `part-00000.arrow`, ...
    ArrowIpc,
    /// A Hugging Face data set folder as the Hub lays it out: Parquet files
    /// `data/train-00000-of-00002.parquet`, ... and the `README.md` card, ready for
    /// `load_dataset(OUT)` or an upload.
    HfDataset,
}

impl DataFormat {
    pub const ALL: [Self; 4] = [Self::Parquet, Self::Jsonl, Self::ArrowIpc, Self::HfDataset];

    /// The data files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet | Self::HfDataset => "parquet",
            Self::Jsonl => "jsonl",
            Self::ArrowIpc => "arrow",
        }
    }

    /// The name a pipeline file gives a sink of this format.
    pub fn sink_type(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::ArrowIpc => "arrow_ipc",
            Self::HfDataset => "hf_dataset",
        }
    }

    /// The folder (relative to the output) and the file-name prefix of a run's data parts
    /// (`score`, `label`): `part-*` at the top, or the Hub's `data/train-*`.
    pub fn parts_at(self) -> (&'static str, &'static str) {
        match self {
            Self::HfDataset => ("data", "train"),
            _ => ("", "part"),
        }
    }

    /// The glob of a run's data parts, relative to the output (the dataset card's pattern).
    pub fn parts_pattern(self) -> String {
        let (folder, prefix) = self.parts_at();
        let name = format!("{prefix}-*.{}", self.extension());
        if folder.is_empty() {
            name
        } else {
            format!("{folder}/{name}")
        }
    }

    /// The file of one of a filter's committed units, relative to its output: `stream` is
    /// `kept` or `skipped`. In a Hub folder the kept rows are the `train` split and the skipped
    /// ones their own configuration; the unit's name stays in the file's, since a resumed run
    /// finds its committed work by it.
    pub fn unit_file(self, stream: &str, unit: &str) -> String {
        match self {
            Self::HfDataset if stream == "kept" => format!("data/train-{unit}.parquet"),
            Self::HfDataset => format!("data/{stream}-{unit}.parquet"),
            _ => format!("{stream}/{unit}.{}", self.extension()),
        }
    }

    /// The glob of a filter's `stream` (`kept`, `skipped`): every unit's file.
    pub fn units_pattern(self, stream: &str) -> String {
        self.unit_file(stream, "*")
    }

    /// The format of a data file, by its extension.
    pub fn of_file(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "parquet" => Some(Self::Parquet),
            "jsonl" => Some(Self::Jsonl),
            "arrow" => Some(Self::ArrowIpc),
            _ => None,
        }
    }
}

impl std::fmt::Display for DataFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sink_type())
    }
}

/// `--format`: how `score`, `filter` and `label` store their data rows (a pipeline file says
/// it with its sink's `type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, clap::Args)]
pub struct FormatFlag {
    /// How the data rows are stored: parquet, jsonl, arrow_ipc, or hf_dataset (the Hub's
    /// layout: data/train-*.parquet and a README.md card). Rejects stay Parquet.
    #[arg(long, value_enum, default_value_t = DataFormat::default())]
    pub format: DataFormat,
}

/// A folder of data rows and the format they are stored in.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOutput {
    pub folder: PathBuf,
    pub format: DataFormat,
}

impl DataOutput {
    /// A run's data sinks: its own folder in its format, then the further ones.
    pub fn all<'a>(
        folder: &Path,
        format: DataFormat,
        more: &'a [DataOutput],
    ) -> impl Iterator<Item = DataOutput> + 'a {
        std::iter::once(DataOutput {
            folder: folder.to_path_buf(),
            format,
        })
        .chain(more.iter().cloned())
    }
}

/// One data file being written: batches in, the file renamed into place by [`Self::commit`].
pub struct DataFile {
    encoder: Encoder,
    schema: SchemaRef,
    tmp: PathBuf,
    rows: u64,
}

enum Encoder {
    Parquet(ArrowWriter<File>),
    Jsonl(arrow::json::Writer<BufWriter<File>, LineDelimited>),
    ArrowIpc(arrow::ipc::writer::FileWriter<BufWriter<File>>),
}

impl DataFile {
    /// Starts a file of `format` at the temporary path `tmp` (its folder is created).
    pub fn create(format: DataFormat, tmp: PathBuf, schema: SchemaRef) -> Result<Self, SinkError> {
        super::atomic::create_parent(&tmp)?;
        let err = |e: &dyn std::fmt::Display| SinkError::Write {
            path: tmp.clone(),
            message: e.to_string(),
        };
        let file = File::create(&tmp).map_err(|e| err(&e))?;
        let encoder = match format {
            DataFormat::Parquet | DataFormat::HfDataset => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                Encoder::Parquet(
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| err(&e))?,
                )
            }
            // explicit nulls: every line has every column, so readers infer one schema
            DataFormat::Jsonl => Encoder::Jsonl(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, LineDelimited>(BufWriter::new(file)),
            ),
            DataFormat::ArrowIpc => Encoder::ArrowIpc(
                arrow::ipc::writer::FileWriter::try_new(BufWriter::new(file), &schema)
                    .map_err(|e| err(&e))?,
            ),
        };
        Ok(Self {
            encoder,
            schema,
            tmp,
            rows: 0,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        let err = SinkError::at(&self.tmp);
        match &mut self.encoder {
            Encoder::Parquet(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
            Encoder::Jsonl(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
            Encoder::ArrowIpc(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file, renames it to `path` (durably) and returns its rows.
    pub fn commit(self, path: &Path) -> Result<u64, SinkError> {
        let err = SinkError::at(&self.tmp);
        match self.encoder {
            Encoder::Parquet(w) => {
                w.close().map_err(|e| err(e.to_string()))?;
            }
            Encoder::Jsonl(mut w) => {
                w.finish().map_err(|e| err(e.to_string()))?;
                flush(w.into_inner()).map_err(&err)?;
            }
            Encoder::ArrowIpc(mut w) => {
                w.finish().map_err(|e| err(e.to_string()))?;
                flush(w.into_inner().map_err(|e| err(e.to_string()))?).map_err(&err)?;
            }
        }
        super::atomic::commit(&self.tmp, path)?;
        Ok(self.rows)
    }
}

fn flush(writer: BufWriter<File>) -> Result<(), String> {
    writer
        .into_inner()
        .map(drop)
        .map_err(|e| e.error().to_string())
}

/// Rows in a data file written by [`DataFile`], by its extension: a Parquet footer, the lines
/// of a JSON Lines file, the batches of an Arrow IPC file.
pub fn rows_in(path: &Path) -> Result<u64, String> {
    let open = || File::open(path).map_err(|e| format!("{}: {e}", path.display()));
    let unreadable = |kind: &str, e: &dyn std::fmt::Display| {
        format!("{}: not a readable {kind} file: {e}", path.display())
    };
    match DataFormat::of_file(path) {
        Some(DataFormat::Jsonl) => {
            let mut rows = 0;
            for line in BufReader::new(open()?).lines() {
                let line = line.map_err(|e| unreadable("JSON Lines", &e))?;
                rows += u64::from(!line.trim().is_empty());
            }
            Ok(rows)
        }
        Some(DataFormat::ArrowIpc) => {
            let reader = arrow::ipc::reader::FileReader::try_new(open()?, None)
                .map_err(|e| unreadable("Arrow IPC", &e))?;
            let mut rows = 0;
            for batch in reader {
                rows += batch.map_err(|e| unreadable("Arrow IPC", &e))?.num_rows() as u64;
            }
            Ok(rows)
        }
        _ => {
            use parquet::file::reader::FileReader;
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(open()?)
                .map_err(|e| unreadable("Parquet", &e))?;
            Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float32Array, ListArray, StringArray};
    use arrow::datatypes::{DataType, Field, Float32Type, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let steps = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(0.25), Some(0.5)]),
            None,
            Some(vec![]),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("score", DataType::Float32, true),
            Field::new("step_mean", steps.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(Float32Array::from(vec![Some(1.5), Some(2.0), None])),
                Arc::new(steps),
            ],
        )
        .unwrap()
    }

    #[test]
    fn each_format_reads_back_the_rows_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        for format in DataFormat::ALL {
            let path = dir.path().join(format!("{format}.{}", format.extension()));
            let tmp = super::super::atomic::temp_path(&path, "t");
            let b = batch();
            let mut file = DataFile::create(format, tmp.clone(), b.schema()).unwrap();
            file.write(&b).unwrap();
            file.write(&b.slice(0, 1)).unwrap();
            assert_eq!(file.commit(&path).unwrap(), 4);
            assert!(!tmp.exists(), "{format}: the temporary file is renamed");
            assert_eq!(rows_in(&path).unwrap(), 4, "{format}");
        }
        let text = std::fs::read_to_string(dir.path().join("jsonl.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"id": "a", "score": 1.5, "step_mean": [0.25, 0.5]})
        );
        let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(
            second,
            serde_json::json!({"id": null, "score": 2.0, "step_mean": null}),
            "explicit nulls keep every column on every line"
        );
    }

    #[test]
    fn patterns_name_the_files_each_format_writes() {
        let parts: Vec<String> = DataFormat::ALL.iter().map(|f| f.parts_pattern()).collect();
        assert_eq!(
            parts,
            [
                "part-*.parquet",
                "part-*.jsonl",
                "part-*.arrow",
                "data/train-*.parquet"
            ]
        );
        let units: Vec<(String, String)> = DataFormat::ALL
            .iter()
            .map(|f| (f.units_pattern("kept"), f.units_pattern("skipped")))
            .collect();
        let pairs: Vec<(&str, &str)> = units
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("kept/*.parquet", "skipped/*.parquet"),
                ("kept/*.jsonl", "skipped/*.jsonl"),
                ("kept/*.arrow", "skipped/*.arrow"),
                ("data/train-*.parquet", "data/skipped-*.parquet"),
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_its_format_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.arrow");
        std::fs::write(&path, b"not arrow").unwrap();
        let e = rows_in(&path).unwrap_err();
        assert!(e.contains("x.arrow") && e.contains("Arrow IPC"), "{e}");
    }
}
