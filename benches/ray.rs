//! What running `filter` on Ray costs: the same corpus filtered on one machine without Ray, then
//! with `--ray local:1` and `--ray local:2` (loopback clusters started for the run). On a 2-core
//! machine two nodes cannot be faster than one process; the numbers show the overhead per unit
//! (a task: a worker, an `actprm` process, the model opened) and of starting a cluster.
//!
//! `cargo bench --bench ray` (needs `ACTPRM_RAY=1 ./setup.sh`). ACTPRM_BENCH_UNITS (default 16)
//! row groups of ACTPRM_BENCH_GROUP_ROWS (default 1000) rows, tiny backbone.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn actprm(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(args)
        .output()
        .expect("actprm runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Filters `corpus` into `out` (with `extra` flags); returns (wall seconds, summary).
fn filter(model: &str, corpus: &str, out: &Path, extra: &[&str]) -> (f64, serde_json::Value) {
    let out = out.display().to_string();
    let mut args = vec![
        "filter",
        "-i",
        corpus,
        "-o",
        &out,
        "--model",
        model,
        "--keep-rate",
        "0.6",
        "--threads",
        "1",
        "--json",
    ];
    args.extend(extra);
    let started = Instant::now();
    let summary = actprm(&args);
    (started.elapsed().as_secs_f64(), summary)
}

fn main() {
    let units = env_u64("ACTPRM_BENCH_UNITS", 16);
    let group = env_u64("ACTPRM_BENCH_GROUP_ROWS", 1000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::Builder::new()
        .prefix("raybench")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let w = work.path();
    let model = w.join("tiny").display().to_string();
    actprm(&["tiny-model", "-o", &model]);
    let corpus = w.join("corpus").display().to_string();
    let sample = root.join("tests/data/prm800k_test_sample.jsonl");
    actprm(&[
        "generate",
        "--from",
        sample.to_str().unwrap(),
        "-o",
        &corpus,
        "--rows",
        &(units * group).to_string(),
        "--files",
        &units.div_ceil(4).to_string(),
        "--row-group-rows",
        &group.to_string(),
    ]);
    let rows = (units * group) as f64;
    println!("{units} units of {group} rows, tiny backbone, --threads 1");
    let (local, _) = filter(&model, &corpus, &w.join("local"), &[]);
    let per_unit_local = local / units as f64;
    println!(
        "one machine, no Ray   {local:7.2} s  {:8.0} rows/s  {:.3} s per unit",
        rows / local,
        per_unit_local
    );
    for (nodes, per_task) in [(1, "1"), (2, "1"), (2, "4")] {
        let address = format!("local:{nodes}");
        let out = w.join(format!("ray{nodes}-{per_task}"));
        let flags = ["--ray", &address, "--ray-units-per-task", per_task];
        let (wall, _) = filter(&model, &corpus, &out, &flags);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("ray/manifest.json")).unwrap()).unwrap();
        let tasks: Vec<f64> = manifest["units"]
            .as_object()
            .unwrap()
            .values()
            .map(|u| u["seconds"].as_f64().unwrap())
            .collect();
        // a task of k units reports its time once per unit
        let per_unit_task =
            tasks.iter().sum::<f64>() / tasks.len() as f64 / per_task.parse::<f64>().unwrap();
        println!(
            "--ray {address} x{per_task}/task {wall:7.2} s  {:8.0} rows/s  {per_unit_task:.3} s per unit in a task \
             (+{:.3} s over one process), {:.2}x the time of one machine",
            rows / wall,
            per_unit_task - per_unit_local,
            wall / local
        );
    }
}
