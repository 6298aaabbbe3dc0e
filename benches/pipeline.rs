//! Scorer throughput on real data, side by side in one run:
//! - end to end: `run_score` (Parquet -> tokenise -> ORT backbone + heads -> Parquet) tokens/s;
//! - ORT alone: the same windows, in the same length-bucketed batches, through the backbone only;
//! - the ratio (pipeline efficiency: how much of ORT's speed the whole pipeline keeps).
//!
//! `cargo bench --bench pipeline` (needs ./setup.sh). Optional: ACTPRM_BENCH_INPUT=path.parquet,
//! ACTPRM_BENCH_MODEL=model-dir (e.g. an `actprm import`ed PRM; default: the embedded model),
//! ACTPRM_BENCH_DEVICE=cuda.

mod windows;
use windows::windows;

use std::path::Path;
use std::time::Instant;

use actprm::model::{Backbone, LoadedModel, RuntimeOptions};
use actprm::pipeline::{run_score, ScoreJob};
use actprm::score::{plan_batches, CallLimits, ScoreOptions};
use actprm::tokenise::Tokeniser;

fn main() {
    let input = std::env::var("ACTPRM_BENCH_INPUT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/prm800k_phase1_test.parquet"
        )
        .to_string()
    });
    let model_dir = std::env::var_os("ACTPRM_BENCH_MODEL").map(std::path::PathBuf::from);
    let runtime = RuntimeOptions {
        device: std::env::var("ACTPRM_BENCH_DEVICE")
            .unwrap_or_else(|_| "cpu".into())
            .parse()
            .expect("ACTPRM_BENCH_DEVICE: cpu, cuda or cuda:N"),
        ..RuntimeOptions::default()
    };
    let out = tempfile::tempdir().expect("tempdir");
    let options = ScoreOptions::default();

    // end to end
    let mut job = ScoreJob::new(vec![input.clone()], out.path().join("scored"));
    job.score = options;
    job.model = model_dir.clone();
    job.runtime = runtime;
    let started = Instant::now();
    let summary = run_score(&job, Default::default()).expect("scoring");
    let e2e = started.elapsed().as_secs_f64();
    let e2e_tps = summary.tokens as f64 / e2e;

    // ORT alone on the same windows and batches
    let model = LoadedModel::open(model_dir.as_deref()).expect("model");
    let tokeniser = Tokeniser::for_model(&model).expect("tokenizer");
    let mut backbone = Backbone::open(&model, &runtime).expect("backbone");
    let windows = windows(Path::new(&input), &tokeniser);
    let tokens: usize = windows.iter().map(|w| w.ids.len()).sum();
    // the pipeline buckets per batch of 64 rows; do the same here
    let started = Instant::now();
    for chunk in windows.chunks(80) {
        let lengths: Vec<usize> = chunk.iter().map(|w| w.ids.len()).collect();
        let limits = CallLimits {
            token_budget: options.batching.token_budget_on(runtime.device),
            max_batch: options.batching.max_batch,
            attention_budget: usize::MAX,
        };
        for group in plan_batches(&lengths, limits) {
            let inputs: Vec<_> = group.iter().map(|&i| chunk[i].input()).collect();
            backbone.separator_features(&inputs).expect("backbone");
        }
    }
    let ort = started.elapsed().as_secs_f64();
    let ort_tps = tokens as f64 / ort;

    println!(
        "input: {input} ({} rows, {} tokens), model {}, {:?}",
        summary.rows_scored, summary.tokens, summary.model_version, runtime.device
    );
    println!(
        "end to end : {:>8.0} tokens/s  {:>6.1} rows/s  ({e2e:.1} s)",
        e2e_tps,
        summary.rows_scored as f64 / e2e
    );
    println!(
        "ORT alone  : {:>8.0} tokens/s  ({ort:.1} s, same windows and batches)",
        ort_tps
    );
    println!(
        "pipeline efficiency (end to end / ORT alone): {:.2}",
        e2e_tps / ort_tps
    );
}
