//! Shared test helpers: real records from `tests/data`, written as Parquet the way users have them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actprm::source::jsonl::{read_labelled, to_record_batch, LabelledTrajectory};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

pub fn records(name: &str) -> Vec<LabelledTrajectory> {
    read_labelled(&data(name)).expect("test data parses")
}

pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).expect("create parquet");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
}

/// The PRM800K sample as Parquet (`id, problem, steps, label`).
pub fn prm800k_parquet(dir: &Path) -> PathBuf {
    let path = dir.join("prm800k_sample.parquet");
    write_parquet(&path, &to_record_batch(&records("prm800k_test_sample.jsonl")));
    path
}

pub fn actprm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actprm")).args(args).output().expect("actprm runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn read_parquet_dir(dir: &Path, prefix: &str) -> Vec<RecordBatch> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    parts.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".parquet"))
    });
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            let f = std::fs::File::open(p).expect("open part");
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("parquet")
                .build()
                .expect("reader")
                .map(|b| b.expect("batch"))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary.json")).expect("json")
}
