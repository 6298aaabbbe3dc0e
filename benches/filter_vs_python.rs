//! Rust filter vs the straightforward Python pipeline (benches/python_baseline.py: pyarrow +
//! tokenizers + onnxruntime) on the same input and model files, side by side in one run; then
//! peak RSS of the Rust filter with the tiny backbone at growing corpus sizes.
//!
//! `cargo bench --bench filter_vs_python`. Environment:
//! - ACTPRM_BENCH_ROWS (default 1000): rows for the Rust/Python comparison with the real default
//!   model (0 skips it);
//! - ACTPRM_BENCH_TINY_ROWS (default 20000): the same with the tiny backbone, where the pipeline
//!   around the model (Parquet, tokenisation, batching, writing) is most of the work (0 skips it);
//! - ACTPRM_BENCH_SIZES (default "10000,100000"): corpus sizes for the memory check ("...,1000000" for 1M);
//! - the Python side needs `pip install pyarrow tokenizers onnxruntime numpy` (the bench installs
//!   them into .deps/pybench when missing).

mod python;
use python::python_env;

use std::path::Path;
use std::process::Command;

fn actprm(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(args)
        .output()
        .expect("actprm runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

/// Generates `rows` rows, then runs the Rust filter and the Python baseline on them with the
/// same model directory, one after the other, and prints both and the ratio.
fn compare(root: &Path, work: &Path, label: &str, model: &str, rows: u64) {
    let d = |p: &str| work.join(format!("{label}-{p}")).display().to_string();
    let sample = root
        .join("tests/data/prm800k_test_sample.jsonl")
        .display()
        .to_string();
    actprm(&[
        "generate",
        "--from",
        &sample,
        "-o",
        &d("corpus"),
        "--rows",
        &rows.to_string(),
        "--files",
        "2",
        "--row-group-rows",
        "500",
    ]);
    println!("{label} ({rows} rows)");
    let rust = actprm(&[
        "filter",
        "-i",
        &d("corpus"),
        "-o",
        &d("rust_out"),
        "--model",
        model,
        "--keep-rate",
        "0.6",
        "--json",
        "--threads",
        "2",
    ]);
    let rust_rps = rust["rows_per_second"].as_f64().unwrap_or(0.0);
    let rust_tps = rust["tokens_per_second"].as_f64().unwrap_or(0.0);
    println!(
        "  rust filter : {rust_rps:>8.2} rows/s  {rust_tps:>9.0} tokens/s  (peak RSS {:.0} MiB)",
        rust["peak_rss_mb"].as_f64().unwrap_or(0.0)
    );
    let Some(site) = python_env(root) else {
        println!("  python baseline skipped: could not install pyarrow/tokenizers/onnxruntime");
        return;
    };
    let o = Command::new("python3")
        .env("PYTHONPATH", &site)
        .env("ACTPRM_DEPS", actprm::model::deps_dir())
        .arg(root.join("benches/python_baseline.py"))
        .args([
            model,
            &d("py_out"),
            &d("corpus"),
            "--keep-rate",
            "0.6",
            "--threads",
            "2",
        ])
        .output()
        .expect("python runs");
    let py: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("python: {}", String::from_utf8_lossy(&o.stderr)));
    let (py_rps, py_tps) = (
        py["rows_per_second"].as_f64().unwrap_or(0.0),
        py["tokens_per_second"].as_f64().unwrap_or(0.0),
    );
    println!("  python      : {py_rps:>8.2} rows/s  {py_tps:>9.0} tokens/s");
    println!(
        "  ratio Rust/Python: {:.2} (rows/s)",
        rust_rps / py_rps.max(1e-9)
    );
}

fn env_rows(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |p: &str| dir.path().join(p).display().to_string();
    let sample = root
        .join("tests/data/prm800k_test_sample.jsonl")
        .display()
        .to_string();

    // the default model as a directory both pipelines read
    let model = d("model");
    let base = actprm::model::LoadedModel::embedded().expect("model");
    base.write_dir(
        Path::new(&model),
        &base.heads_bytes,
        base.anchors_bytes.as_deref(),
        &[],
    )
    .expect("model dir");
    actprm(&["tiny-model", "-o", &d("tiny")]);

    // the real model: the backbone dominates; the tiny one: what the pipeline around it costs
    let real_rows = env_rows("ACTPRM_BENCH_ROWS", 1000);
    if real_rows > 0 {
        compare(root, dir.path(), "default model", &model, real_rows);
    }
    let tiny_rows = env_rows("ACTPRM_BENCH_TINY_ROWS", 20_000);
    if tiny_rows > 0 {
        compare(root, dir.path(), "tiny backbone", &d("tiny"), tiny_rows);
    }

    // memory at growing corpus sizes (tiny backbone)
    let sizes = std::env::var("ACTPRM_BENCH_SIZES").unwrap_or_else(|_| "10000,100000".into());
    for size in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<u64>().ok())
    {
        let corpus = d(&format!("big{size}"));
        actprm(&[
            "generate",
            "--from",
            &sample,
            "-o",
            &corpus,
            "--rows",
            &size.to_string(),
            "--files",
            "10",
            "--row-group-rows",
            "5000",
        ]);
        let s = actprm(&[
            "filter",
            "-i",
            &corpus,
            "-o",
            &d(&format!("big{size}_out")),
            "--model",
            &d("tiny"),
            "--keep-rate",
            "0.6",
            "--json",
        ]);
        println!(
            "rows {size:>8}: peak RSS {:>6.1} MiB, {:>7.0} rows/s, kept {}",
            s["peak_rss_mb"].as_f64().unwrap_or(0.0),
            s["rows_per_second"].as_f64().unwrap_or(0.0),
            s["rows_kept"]
        );
        let _ = std::fs::remove_dir_all(&corpus);
    }
}
