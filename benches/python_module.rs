//! The Python module against the command line (issue 34), on this machine:
//! 1. rows/s on the 16-unit corpus of `benches/ray.rs` (tiny backbone, one thread per scorer):
//!    `actprm score` in one process, `filter --ray local:2`, `Model().score` in one Python
//!    process, and Ray Data `map_batches(actprm.ray.Scorer)` on a 2-node loopback cluster;
//! 2. the overhead of Python on the real job: the 353 PRM800K test rows with the embedded
//!    default model, `actprm score` vs a Python process that imports actprm, opens the model and
//!    scores the table, end to end, rounds interleaved.
//!
//! `cargo bench --profile dev --bench python_module` (needs `ACTPRM_RAY=1 ./setup.sh python`; the module
//! is a dev build, so the command line is compared in its dev build too).
//! ACTPRM_BENCH_UNITS (16), ACTPRM_BENCH_GROUP_ROWS (1000), ACTPRM_BENCH_ROUNDS (3).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `program args`, returning (wall seconds, stdout as JSON or Null).
fn timed(program: &Path, args: &[&str]) -> (f64, serde_json::Value) {
    let started = Instant::now();
    let o = Command::new(program)
        .args(args)
        .output()
        .expect("the program runs");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text.lines().last().unwrap_or("");
    (
        wall,
        serde_json::from_str(last).unwrap_or(serde_json::Value::Null),
    )
}

fn main() {
    let units = env_u64("ACTPRM_BENCH_UNITS", 16);
    let group = env_u64("ACTPRM_BENCH_GROUP_ROWS", 1000);
    let rounds = env_u64("ACTPRM_BENCH_ROUNDS", 3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let actprm = Path::new(env!("CARGO_BIN_EXE_actprm"));
    let python = actprm::model::deps_dir().join("python/bin/python");
    assert!(python.exists(), "run ACTPRM_RAY=1 ./setup.sh python first");
    let script = root.join("benches/python_module/score.py");
    let script = script.to_str().expect("a UTF-8 path");
    let work = tempfile::Builder::new()
        .prefix("pybench")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let w = work.path();
    let s = |p: &Path| p.display().to_string();
    let model = s(&w.join("tiny"));
    timed(actprm, &["tiny-model", "-o", &model]);
    let corpus = s(&w.join("corpus"));
    let sample = s(&root.join("tests/data/prm800k_test_sample.jsonl"));
    let files = units.div_ceil(4).to_string();
    let (rows_arg, group_arg) = ((units * group).to_string(), group.to_string());
    timed(
        actprm,
        &[
            "generate",
            "--from",
            &sample,
            "-o",
            &corpus,
            "--rows",
            &rows_arg,
            "--files",
            &files,
            "--row-group-rows",
            &group_arg,
        ],
    );
    let rows = (units * group) as f64;
    println!("1. {units} units of {group} rows, tiny backbone, one thread per scorer");
    let out = s(&w.join("score"));
    let (cli, _) = timed(
        actprm,
        &[
            "score",
            "-i",
            &corpus,
            "-o",
            &out,
            "--model",
            &model,
            "--threads",
            "1",
            "--quiet",
        ],
    );
    println!(
        "actprm score, one process         {cli:7.2} s {:8.0} rows/s",
        rows / cli
    );
    let out = s(&w.join("ray"));
    let (ray, _) = timed(
        actprm,
        &[
            "filter",
            "-i",
            &corpus,
            "-o",
            &out,
            "--model",
            &model,
            "--threads",
            "1",
            "--keep-rate",
            "0.6",
            "--ray",
            "local:2",
            "--quiet",
        ],
    );
    println!(
        "actprm filter --ray local:2       {ray:7.2} s {:8.0} rows/s (cluster start included)",
        rows / ray
    );
    let (py, report) = timed(&python, &[script, "model", &model, &corpus, "1"]);
    println!(
        "Python Model().score              {py:7.2} s {:8.0} rows/s (scoring {:.2} s)",
        rows / py,
        report["score_s"].as_f64().unwrap_or(f64::NAN)
    );
    let (data, report) = timed(&python, &[script, "ray", &model, &corpus, "1", "2"]);
    let job = report["job_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "Ray Data map_batches, 2 nodes     {data:7.2} s {:8.0} rows/s (job {job:.2} s = {:.0} rows/s after a {:.1} s cluster start)",
        rows / data,
        rows / job,
        report["cluster_start_s"].as_f64().unwrap_or(f64::NAN)
    );

    println!("2. 353 PRM800K test rows, embedded default model, end to end ({rounds} rounds)");
    let input = s(&root.join("tests/data/prm800k_phase1_test.parquet"));
    let (mut cli_walls, mut py_walls) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let out = s(&w.join(format!("pb{round}")));
        let (c, _) = timed(actprm, &["score", "-i", &input, "-o", &out, "--quiet"]);
        let (p, report) = timed(&python, &[script, "model", "-", &input, "0"]);
        println!(
            "round {round}: actprm score {c:6.2} s   Python {p:6.2} s (open {:.2} s, score {:.2} s)   ratio {:.3}",
            report["open_s"].as_f64().unwrap_or(f64::NAN),
            report["score_s"].as_f64().unwrap_or(f64::NAN),
            p / c
        );
        cli_walls.push(c);
        py_walls.push(p);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, p) = (median(&mut cli_walls), median(&mut py_walls));
    println!(
        "median: actprm score {c:.2} s, Python {p:.2} s: Python takes {:+.1} % of the command line's time",
        (p / c - 1.0) * 100.0
    );
}
