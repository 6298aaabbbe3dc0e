//! Shared test helpers: real records from `tests/data`, written as Parquet the way users have them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actprm::source::jsonl::{read_labelled, to_record_batch, LabelledTrajectory};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A writable copy of the Hugging Face fixture `name` (`tests/data/hf/NAME`) at `to`.
pub fn fixture_copy(name: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(data("hf").join(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
    to.to_path_buf()
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
    write_parquet(
        &path,
        &to_record_batch(&records("prm800k_test_sample.jsonl")),
    );
    path
}

pub fn actprm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(args)
        .output()
        .expect("actprm runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn read_parquet_dir(dir: &Path, prefix: &str) -> Vec<RecordBatch> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    parts.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".parquet"))
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

/// `(id, step_mean)` of every row of the `part-*.parquet` files of a score output, in order.
pub fn step_means_in(dir: &Path) -> Vec<(String, Vec<f32>)> {
    step_means_of(dir, "part-")
}

/// `(id, step_mean)` of every row of the Parquet files of `dir` whose names start with `prefix`.
pub fn step_means_of(dir: &Path, prefix: &str) -> Vec<(String, Vec<f32>)> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for b in read_parquet_dir(dir, prefix) {
        let ids = b.column_by_name("id").expect("id").as_string::<i32>();
        let means = b
            .column_by_name("step_mean")
            .expect("step_mean")
            .as_list::<i32>();
        for i in 0..b.num_rows() {
            let v = means.value(i);
            let v = v.as_primitive::<arrow::datatypes::Float32Type>();
            out.push((ids.value(i).to_string(), v.values().to_vec()));
        }
    }
    out
}

pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"))
        .expect("json")
}

/// A model directory with the tiny backbone (`actprm tiny-model`): fast scale and crash tests.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny");
    let o = actprm(&["tiny-model", "-o", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    model
}

/// Step features of the PRM800K sample (`dir/pool.arrow`, labelled), scored by `model` (absent:
/// the embedded default) into `dir/scored`: what `train`, `experiment` and their stages read.
pub fn prm800k_features(dir: &Path, model: Option<&Path>) -> PathBuf {
    let features = dir.join("pool.arrow");
    let input = prm800k_parquet(dir);
    let scored = dir.join("scored");
    let mut args = vec![
        "score",
        "-q",
        "-i",
        input.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
    ];
    if let Some(model) = model {
        args.extend(["--model", model.to_str().unwrap()]);
    }
    let o = actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    features
}

/// `actprm generate` from the real PRM800K sample: `rows` rows in `files` files of `group`-row
/// row groups, in `dir/corpus`.
pub fn corpus(dir: &Path, rows: u64, files: u64, group: u64) -> PathBuf {
    let out = dir.join("corpus");
    let from = data("prm800k_test_sample.jsonl");
    let o = actprm(&[
        "generate",
        "--from",
        from.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rows",
        &rows.to_string(),
        "--files",
        &files.to_string(),
        "--row-group-rows",
        &group.to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// The sorted `id` values of the Parquet files in `dir` whose names start with `prefix`.
pub fn ids_in(dir: &Path, prefix: &str) -> Vec<String> {
    let mut ids: Vec<String> = read_parquet_dir(dir, prefix)
        .iter()
        .flat_map(|b| {
            arrow::array::AsArray::as_string::<i32>(b.column_by_name("id").unwrap())
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids
}

/// `actprm filter` of the tests: tiny model, keep rate 0.6, batches of 50, JSON summary.
pub fn filter_args<'a>(model: &'a str, corpus: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "filter",
        "-i",
        corpus,
        "-o",
        out,
        "--model",
        model,
        "--keep-rate",
        "0.6",
        "--batch-rows",
        "50",
        "--json",
    ]
}
