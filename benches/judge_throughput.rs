//! Requests per second the judge client sustains against the loopback server at a concurrency of
//! 64 (no cache, then with the on-disk cache, which syncs every answer to disk before using it).
//! Run: `cargo bench --bench judge_throughput` (JUDGE_BENCH_REQUESTS to change the count).

#[path = "../tests/common/judge_server.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use actprm::label::judge::{JudgeConfig, JudgeLabeller};
use actprm::label::LabelRequest;
use common::{JudgeServer, Reply, Seen};

fn requests(n: usize, tag: &str) -> Vec<LabelRequest> {
    (0..n)
        .map(|i| LabelRequest {
            key: format!("{tag}-{i}"),
            problem: format!("Problem {tag}-{i}: what is {i} + {i}?"),
            steps: vec![
                format!("{i} + {i} = {}", 2 * i),
                format!("The answer is {}.", 2 * i),
            ],
            pool_label: None,
        })
        .collect()
}

fn run(server: &JudgeServer, cache: Option<std::path::PathBuf>, n: usize, tag: &str) -> f64 {
    let config = JudgeConfig {
        url: server.url(),
        model: "bench".into(),
        api_key_env: "ACTPRM_BENCH_NO_KEY".into(),
        concurrency: 64,
        timeout_secs: 30.0,
        max_tokens: 256,
        cache,
        ..JudgeConfig::default()
    };
    let mut labeller =
        JudgeLabeller::new(&config, actprm::report::Log::new(|_: &str| {})).expect("judge");
    labeller.label_detailed(&requests(500, &format!("{tag}-warmup")));
    let batch = requests(n, tag);
    let before = labeller.accounting().requests;
    let started = Instant::now();
    let outcomes = labeller.label_detailed(&batch);
    let seconds = started.elapsed().as_secs_f64();
    let sent = labeller.accounting().requests - before;
    let labelled = outcomes.iter().filter(|o| o.label == Some(-1)).count();
    assert_eq!(labelled, n, "every request answered");
    sent as f64 / seconds
}

fn main() {
    let n: usize = std::env::var("JUDGE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let server = JudgeServer::start_with(
        Arc::new(|_: &Seen| {
            Reply::Answer {
            content: "<analysis_1>Correct.</analysis_1>\n<analysis_2>Correct.</analysis_2>\n<conclusion>Correct</conclusion>".into(),
            completion_tokens: 40,
        }
        }),
        2,
        false,
    );
    let plain = run(&server, None, n, "plain");
    println!("judge client, concurrency 64, loopback, no cache:   {plain:>8.0} requests/s ({n} requests)");
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = run(&server, Some(dir.path().join("cache")), n, "cached");
    println!("judge client, concurrency 64, loopback, disk cache: {cached:>8.0} requests/s ({n} requests, every answer synced before use)");
}
