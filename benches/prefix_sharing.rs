//! Prefix sharing (issue 32) against each window scored alone, end to end with `actprm score`,
//! on three corpora built from the real PRM800K test file (`tests/data/prm800k_phase1_test.parquet`,
//! 353 trajectories of 57 problems, ordered by problem):
//! - `as ordered`: its first rows, as generated corpora come (a problem's samples together);
//! - `best-of-8`: each problem's first 8 trajectories (problems with fewer are left out);
//! - `one per problem`: each problem's first trajectory (ProcessBench-shaped: nothing but the
//!   prompt to share, and not even that across problems).
//!
//! Prints, per corpus, tokens computed / tokens, rows/s with sharing on and off, their ratio and
//! the peak RSS of each run (`/usr/bin/time`). Rounds interleave on and off so machine noise hits
//! both alike.
//!
//! With ACTPRM_BENCH_TRANSFORMERS=PYTHON (a Python with `tools/hf-reference/requirements.txt` and
//! pyarrow), each corpus is also run through transformers as the reference code runs it
//! (`prefix_sharing_transformers.py`: one conversation at a time, sdpa, f32, 2 threads), and the
//! last columns give its rows/s, actprm's speed-up over it with sharing on, and its peak RSS.
//!
//! `cargo bench --profile dev --bench prefix_sharing` (after `cargo build`; the dev profile
//! spares a release build of every dependency). ACTPRM_BENCH_CHECKPOINT: the Hugging Face checkpoint to
//! import (default the tiny `qwen-prm` fixture; the numbers in docs/models.md use the
//! 0.5B-width one of `tools/hf-reference/speed_checkpoint.py`); ACTPRM_BENCH_ROWS (default 48
//! per corpus); ACTPRM_BENCH_ROUNDS (default 2); ACTPRM_BENCH_CORPORA (a comma list of the
//! corpus names above, default all); ACTPRM_BENCH_INPUT: another Parquet file with
//! `problem` and `steps`, ordered by problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The most recently built `actprm` (release or debug: the native runtime does the work).
fn actprm() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["release", "debug"]
        .iter()
        .map(|profile| root.join("target").join(profile).join("actprm"))
        .filter_map(|bin| Some((bin.metadata().ok()?.modified().ok()?, bin)))
        .max()
        .map(|(_, bin)| bin)
        .expect("build actprm first (cargo build)")
}

fn read(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).expect("input opens");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("one batch")
}

fn write(batch: &RecordBatch, rows: &[u32], path: &Path) {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None).expect("take"))
        .collect();
    let taken = RecordBatch::try_new(batch.schema(), columns).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, taken.schema(), None).expect("writer");
    writer.write(&taken).expect("write");
    writer.close().expect("close");
}

/// Row indices of each corpus, at most `limit` rows each.
fn corpora(batch: &RecordBatch, limit: usize) -> Vec<(&'static str, Vec<u32>)> {
    let problems = batch
        .column_by_name("problem")
        .expect("problem")
        .as_string::<i32>();
    let mut by_problem: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for i in 0..batch.num_rows() {
        let p = problems.value(i).to_string();
        let k = order.iter().position(|q| *q == p).unwrap_or_else(|| {
            order.push(p);
            order.len() - 1
        });
        by_problem.entry(k).or_default().push(i as u32);
    }
    let ordered: Vec<u32> = (0..batch.num_rows().min(limit) as u32).collect();
    let best_of_8: Vec<u32> = by_problem
        .values()
        .filter(|rows| rows.len() >= 8)
        .flat_map(|rows| rows[..8].to_vec())
        .take(limit)
        .collect();
    let one_each: Vec<u32> = by_problem
        .values()
        .map(|rows| rows[0])
        .take(limit)
        .collect();
    vec![
        ("as ordered", ordered),
        ("best-of-8", best_of_8),
        ("one per problem", one_each),
    ]
}

struct Run {
    rows_per_s: f64,
    tokens: u64,
    computed: u64,
    peak_mib: Option<f64>,
}

fn score(model: &Path, input: &Path, out: &Path, sharing: &str) -> Run {
    let o = timed(&actprm())
        .args(["score", "-q", "--overwrite", "-i"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .arg("--model")
        .arg(model)
        .args(["--prefix-sharing", sharing])
        .output()
        .expect("actprm runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    Run {
        rows_per_s: summary["rows_per_second"].as_f64().unwrap_or(0.0),
        tokens: summary["tokens"].as_u64().unwrap_or(0),
        computed: summary["tokens_computed"].as_u64().unwrap_or(0),
        peak_mib: peak_mib(&stderr),
    }
}

/// A command run under `/usr/bin/time` where it exists, its peak RSS read from the last line.
fn timed(program: &Path) -> Command {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak_kib=%M"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn peak_mib(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_kib="))
        .and_then(|k| k.trim().parse::<f64>().ok())
        .map(|k| k / 1024.0)
}

/// The same corpus through transformers (`prefix_sharing_transformers.py`).
fn transformers(python: &Path, checkpoint: &Path, input: &Path) -> Run {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/prefix_sharing_transformers.py");
    let o = timed(python)
        .arg(script)
        .arg(checkpoint)
        .arg(input)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout.lines().last().expect("a result line");
    let result: serde_json::Value = serde_json::from_str(line).expect("json");
    Run {
        rows_per_s: result["rows_per_s"].as_f64().unwrap_or(0.0),
        tokens: result["tokens"].as_u64().unwrap_or(0),
        computed: result["tokens"].as_u64().unwrap_or(0),
        peak_mib: peak_mib(&stderr),
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let checkpoint = std::env::var_os("ACTPRM_BENCH_CHECKPOINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/data/hf/qwen-prm"));
    let input = std::env::var_os("ACTPRM_BENCH_INPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/data/prm800k_phase1_test.parquet"));
    let rows: usize = env_or("ACTPRM_BENCH_ROWS", 48);
    let rounds: usize = env_or("ACTPRM_BENCH_ROUNDS", 2);
    let work = tempfile::tempdir().expect("temp dir");
    let model = work.path().join("model");
    let o = Command::new(actprm())
        .args(["import", "--from"])
        .arg(&checkpoint)
        .arg("-o")
        .arg(&model)
        .output()
        .expect("import runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!(
        "prefix sharing vs each window alone: {} imported, {rows} rows per corpus, best of {rounds} rounds",
        checkpoint.display()
    );
    let python = std::env::var_os("ACTPRM_BENCH_TRANSFORMERS").map(PathBuf::from);
    print!(
        "{:<16} {:>5} {:>9} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9}",
        "corpus",
        "rows",
        "tokens",
        "computed",
        "on rows/s",
        "off rows/s",
        "ratio",
        "on MiB",
        "off MiB"
    );
    if python.is_some() {
        print!(" {:>10} {:>7} {:>9}", "hf rows/s", "on/hf", "hf MiB");
    }
    println!();
    // ACTPRM_BENCH_CORPORA: a comma list of the corpora to run (default: all three)
    let only: Option<Vec<String>> = std::env::var("ACTPRM_BENCH_CORPORA")
        .ok()
        .map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    let batch = read(&input);
    for (name, picked) in corpora(&batch, rows) {
        if only.as_ref().is_some_and(|o| !o.iter().any(|c| c == name)) {
            continue;
        }
        let file = work
            .path()
            .join(format!("{}.parquet", name.replace(' ', "-")));
        write(&batch, &picked, &file);
        let (mut on, mut off, mut hf): (Option<Run>, Option<Run>, Option<Run>) = (None, None, None);
        let keep_best = |best: &mut Option<Run>, run: Run| {
            if best.as_ref().is_none_or(|b| run.rows_per_s > b.rows_per_s) {
                *best = Some(run);
            }
        };
        for _ in 0..rounds {
            for (sharing, best) in [("on", &mut on), ("off", &mut off)] {
                keep_best(
                    best,
                    score(&model, &file, &work.path().join(sharing), sharing),
                );
            }
            if let Some(python) = &python {
                keep_best(&mut hf, transformers(python, &checkpoint, &file));
            }
        }
        let (on, off) = (on.expect("a round ran"), off.expect("a round ran"));
        let mib = |r: &Run| r.peak_mib.map_or("n/a".to_string(), |m| format!("{m:.0}"));
        print!(
            "{:<16} {:>5} {:>9} {:>9} {:>10.2} {:>10.2} {:>6.2}x {:>9} {:>9}",
            name,
            picked.len(),
            on.tokens,
            on.computed,
            on.rows_per_s,
            off.rows_per_s,
            on.rows_per_s / off.rows_per_s.max(1e-9),
            mib(&on),
            mib(&off)
        );
        if let Some(hf) = hf {
            print!(
                " {:>10.2} {:>6.2}x {:>9}",
                hf.rows_per_s,
                on.rows_per_s / hf.rows_per_s.max(1e-9),
                mib(&hf)
            );
        }
        println!();
    }
}
