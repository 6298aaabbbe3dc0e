//! The judge labeller against a real HTTP server on loopback with scripted faults. Every test
//! asserts outcomes and counts, never durations.

use crate::judge_server as common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actprm::eval::judge::run_judge_eval;
use actprm::label::judge::{
    Accounting, JudgeConfig, JudgeLabeller, JudgeStatus, Prompt, PromptFormat,
};
use actprm::label::{LabelOutcome, LabelRequest, Labeller};
use actprm::pipeline::{run_label, LabelJob, LabelSummary};
use actprm::report::Log;
use actprm::source::jsonl::{read_labelled, to_record_batch, LabelledTrajectory};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Field, Int32Type, Schema};
use common::{boxed, critique, JudgeServer, Reply, Script, Seen};

const SECRET: &str = "sk-test-7f3a9c1e5b2d4068-do-not-leak";

fn records() -> Vec<LabelledTrajectory> {
    read_labelled(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/judge_records.jsonl"
    )))
    .expect("test records")
}

/// prompt -> (record index, label, steps), so the server can answer like a judge that knows the truth.
fn truth(
    records: &[LabelledTrajectory],
    format: PromptFormat,
) -> Arc<HashMap<String, (usize, i32, usize)>> {
    let prompt = Prompt::builtin(format);
    Arc::new(
        records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    prompt.render(&r.problem, &r.steps),
                    (i, r.label.expect("labelled"), r.steps.len()),
                )
            })
            .collect(),
    )
}

fn write_input(dir: &Path, records: &[LabelledTrajectory], selected: Option<&[bool]>) -> PathBuf {
    let mut batch = to_record_batch(records);
    if let Some(sel) = selected {
        let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
        let mut columns = batch.columns().to_vec();
        fields.push(Arc::new(Field::new(
            "selected",
            arrow::datatypes::DataType::Boolean,
            true,
        )));
        columns.push(Arc::new(BooleanArray::from(sel.to_vec())));
        batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    }
    let path = dir.join("input.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

#[derive(Debug, Clone, PartialEq)]
struct OutRow {
    id: String,
    label: Option<i32>,
    status: String,
    reason: Option<String>,
    raw: Option<String>,
    votes: Option<Vec<Option<i32>>>,
    columns: Vec<String>,
}

fn read_output(dir: &Path) -> Vec<OutRow> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    let mut rows = Vec::new();
    for part in parts {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(part).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
            let (id, status, reason, raw) = (
                s("id"),
                s("judge_status"),
                s("judge_reason"),
                s("judge_raw"),
            );
            let label = b
                .column_by_name("judge_label")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone();
            let votes = b
                .column_by_name("judge_votes")
                .unwrap()
                .as_list::<i32>()
                .clone();
            for i in 0..b.num_rows() {
                let opt =
                    |a: &arrow::array::StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
                rows.push(OutRow {
                    id: id.value(i).to_string(),
                    label: (!label.is_null(i)).then(|| label.value(i)),
                    status: status.value(i).to_string(),
                    reason: opt(&reason),
                    raw: opt(&raw),
                    votes: (!votes.is_null(i))
                        .then(|| votes.value(i).as_primitive::<Int32Type>().iter().collect()),
                    columns: names.clone(),
                });
            }
        }
    }
    rows
}

fn collecting_logger() -> (Log, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (
        Log::new(move |line: &str| l.lock().unwrap().push(line.to_string())),
        lines,
    )
}

fn config(server: &JudgeServer, cache: Option<PathBuf>) -> JudgeConfig {
    JudgeConfig {
        url: server.url(),
        model: "qwq-test".into(),
        api_key_env: "ACTPRM_JUDGE_TEST_UNSET_KEY".into(),
        max_tokens: 150,
        timeout_secs: 10.0,
        concurrency: 4,
        max_retries: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        cache,
        ..JudgeConfig::default()
    }
}

fn label(input: &Path, out: &Path, judge: JudgeConfig, log: Log) -> LabelSummary {
    let mut job = LabelJob::new(
        vec![input.display().to_string()],
        out.to_path_buf(),
        judge,
        log,
    );
    job.batch_rows = 5; // several batches in flight
    run_label(&job).expect("label run")
}

/// requests = answers + every kind of failed attempt; samples = hits + answers + over budget + failed.
fn assert_reconciles(a: &Accounting, samples: u64) {
    let failed_attempts =
        a.http_5xx + a.http_429 + a.http_other + a.timeouts + a.connection_errors + a.bad_bodies;
    assert_eq!(a.requests, a.answers + failed_attempts, "{a:#?}");
    assert_eq!(
        samples,
        a.cache_hits + a.answers + a.samples_over_budget + a.samples_failed,
        "{a:#?}"
    );
}

fn answer_truth(t: &HashMap<String, (usize, i32, usize)>, seen: &Seen) -> Reply {
    let (_, label, steps) = t[&seen.prompt];
    Reply::Answer {
        content: critique(label, steps),
        completion_tokens: 100,
    }
}

#[test]
fn every_row_ends_labelled_or_unlabelled_with_its_reason() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let tt = t.clone();
    let script: Script = Arc::new(move |seen: &Seen| {
        let (i, label, steps) = tt[&seen.prompt];
        let good = Reply::Answer {
            content: critique(label, steps),
            completion_tokens: 100,
        };
        let slow = || Reply::Slow(Duration::from_secs(4), Box::new(good.clone()));
        match (i, seen.nth) {
            (1, 1 | 2) => Reply::Status {
                code: 500,
                body: "{\"error\":\"engine overloaded\"}".into(),
                retry_after: None,
            },
            (2, 1) => Reply::Status {
                code: 429,
                body: "{\"error\":\"rate limited\"}".into(),
                retry_after: Some("1".into()),
            },
            (3, 1) | (4, _) => slow(),
            (5, 1) => Reply::Truncated,
            (6, _) => Reply::NotJson,
            (7, _) => Reply::Answer {
                content: "<analysis_1>Looks fine.</analysis_1> I am not sure.".into(),
                completion_tokens: 20,
            },
            (8, 1) => Reply::Hangup,
            (10, _) => Reply::Status {
                code: 400,
                body: "{\"error\":\"prompt too long\"}".into(),
                retry_after: None,
            },
            (11, _) => Reply::AnswerWithoutUsage(critique(label, steps)),
            _ => good,
        }
    });
    let server = JudgeServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let mut selected = vec![true; records.len()];
    selected[9] = false;
    let input = write_input(dir.path(), &records, Some(&selected));
    let (log, lines) = collecting_logger();
    let out = dir.path().join("out");
    let mut c = config(&server, Some(dir.path().join("cache")));
    c.timeout_secs = 1.0; // the slow replies take 4 s
    let summary = label(&input, &out, c, log);

    let rows = read_output(&out);
    assert_eq!(rows.len(), records.len(), "rows in = rows out");
    let expected = [
        "labelled",
        "labelled",
        "labelled",
        "labelled",
        "failed",
        "labelled",
        "failed",
        "unparseable",
        "labelled",
        "not_selected",
        "failed",
        "labelled",
    ];
    for (i, (row, r)) in rows.iter().zip(&records).enumerate() {
        assert_eq!(row.id, r.id.clone().unwrap(), "input order is kept");
        assert_eq!(row.status, expected[i], "row {i}: {row:?}");
        assert!(
            row.columns.iter().any(|c| c == "steps") && row.columns.iter().any(|c| c == "selected"),
            "input columns kept"
        );
        if row.status == "labelled" {
            assert_eq!(row.label, r.label, "row {i}");
            assert_eq!(row.votes, Some(vec![r.label]));
            assert!(row.reason.is_none());
        } else {
            assert_eq!(row.label, None);
        }
        if !matches!(row.status.as_str(), "labelled" | "not_selected") {
            assert!(
                row.reason.as_deref().is_some_and(|r| !r.is_empty()),
                "row {i} has a reason: {row:?}"
            );
        }
    }
    assert!(
        rows[4].reason.as_deref().unwrap().contains("timed out"),
        "{:?}",
        rows[4].reason
    );
    assert!(
        rows[6]
            .reason
            .as_deref()
            .unwrap()
            .contains("not a chat completion"),
        "{:?}",
        rows[6].reason
    );
    assert!(
        rows[10].reason.as_deref().unwrap().contains("HTTP 400"),
        "{:?}",
        rows[10].reason
    );
    assert!(
        rows[7]
            .reason
            .as_deref()
            .unwrap()
            .contains("no <conclusion>"),
        "{:?}",
        rows[7].reason
    );
    assert_eq!(
        rows[7].raw.as_deref(),
        Some("<analysis_1>Looks fine.</analysis_1> I am not sure."),
        "raw answer kept"
    );

    // counts reconcile, with each other and with what the server saw
    let a = &summary.judge;
    assert_eq!(server.requests(), 21);
    assert_eq!(a.requests, server.requests());
    assert_eq!(a.retries, 10);
    assert_eq!(
        (
            a.http_5xx,
            a.http_429,
            a.http_other,
            a.timeouts,
            a.connection_errors,
            a.bad_bodies
        ),
        (2, 1, 1, 4, 1, 4),
        "{a:#?}"
    );
    assert_eq!(a.answers, 8);
    assert_eq!(a.responses_without_usage, 1);
    assert_eq!(
        (
            a.rows_labelled,
            a.rows_unparseable,
            a.rows_failed,
            a.rows_over_budget
        ),
        (7, 1, 3, 0)
    );
    assert_eq!(a.completion_tokens, 6 * 100 + 20);
    assert_reconciles(a, 11);
    assert_eq!((summary.rows_in, summary.rows_out), (12, 12));
    let by_status: u64 = summary.rows_by_status.values().sum();
    assert_eq!(by_status, 12);
    assert_eq!(summary.rows_by_status["not_selected"], 1);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(written["judge"]["requests"], 21);
    assert_eq!(written["rows_by_status"]["labelled"], 7);
    // the unselected row never reached the server
    let unselected =
        Prompt::builtin(PromptFormat::Critique).render(&records[9].problem, &records[9].steps);
    assert!(server.seen().iter().all(|s| s.prompt != unselected));
    // the 429's Retry-After (1 s) was used instead of the millisecond backoff
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("in 1.0s: HTTP 429")),
        "{lines:#?}"
    );
    assert!(server
        .seen()
        .iter()
        .all(|s| s.max_tokens == 150 && (s.temperature - 0.5).abs() < 1e-9));
}

#[test]
fn a_resumed_run_pays_only_for_missing_answers_and_the_request_budget_holds() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let tt = t.clone();
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&tt, s)));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let cache = dir.path().join("cache");

    // first run: a budget of 5 requests for 12 rows
    let mut c = config(&server, Some(cache.clone()));
    c.max_requests = Some(5);
    let first = label(&input, &dir.path().join("run1"), c, collecting_logger().0);
    assert_eq!(server.requests(), 5, "the request budget is never exceeded");
    let rows = read_output(&dir.path().join("run1"));
    assert_eq!(rows.len(), 12);
    assert_eq!(rows.iter().filter(|r| r.status == "labelled").count(), 5);
    assert_eq!(rows.iter().filter(|r| r.status == "over_budget").count(), 7);
    assert!(rows.iter().filter(|r| r.status == "over_budget").all(|r| r
        .reason
        .as_deref()
        .unwrap()
        .contains("request budget")));
    assert_eq!(first.judge.rows_over_budget, 7);
    assert_reconciles(&first.judge, 12);

    // resumed without a budget: only the 7 missing answers are requested
    let second = label(
        &input,
        &dir.path().join("run2"),
        config(&server, Some(cache.clone())),
        collecting_logger().0,
    );
    assert_eq!(server.requests(), 12);
    assert_eq!((second.judge.cache_hits, second.judge.requests), (5, 7));
    assert_reconciles(&second.judge, 12);
    let rows = read_output(&dir.path().join("run2"));
    assert!(rows
        .iter()
        .zip(&records)
        .all(|(r, rec)| r.status == "labelled" && r.label == rec.label));

    // and a third run is free
    let third = label(
        &input,
        &dir.path().join("run3"),
        config(&server, Some(cache)),
        collecting_logger().0,
    );
    assert_eq!(server.requests(), 12);
    assert_eq!((third.judge.cache_hits, third.judge.requests), (12, 0));
    assert_eq!(read_output(&dir.path().join("run3")), rows);
    // no prompt was ever sent twice
    let mut prompts: Vec<String> = server.seen().into_iter().map(|s| s.prompt).collect();
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 12);
}

#[test]
fn duplicate_rows_in_one_run_are_paid_once() {
    let mut records = records();
    records.truncate(3);
    let dup = records.clone();
    records.extend(dup); // every trajectory twice, in the same batch
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&t, s)));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let mut job = LabelJob::new(
        vec![input.display().to_string()],
        dir.path().join("out"),
        config(&server, Some(dir.path().join("cache"))),
        collecting_logger().0,
    );
    job.batch_rows = 64;
    let summary = run_label(&job).unwrap();
    assert_eq!(server.requests(), 3);
    assert_eq!(
        (
            summary.judge.answers,
            summary.judge.cache_hits,
            summary.judge.rows_labelled
        ),
        (3, 3, 6)
    );
}

#[test]
fn the_token_budget_is_never_exceeded() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&t, s)));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let mut c = config(&server, None);
    c.max_completion_tokens = Some(1000); // max_tokens 150, each answer uses 100
    let summary = label(&input, &dir.path().join("out"), c, collecting_logger().0);
    let sent = server
        .stats
        .completion_tokens_sent
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent <= 1000, "{sent} tokens generated");
    // a request is admitted only while 150 more tokens still fit: 9 answers (900 tokens), not 10
    assert_eq!(summary.judge.rows_labelled, 9);
    assert_eq!(summary.judge.rows_over_budget, 3);
    assert_eq!(summary.judge.budget_tokens, sent);
    assert_eq!(read_output(&dir.path().join("out")).len(), 12);
    assert_reconciles(&summary.judge, 12);
    assert!(
        server
            .stats
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            <= 4
    );
}

#[test]
fn the_concurrency_limit_holds() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| {
        Reply::Slow(Duration::from_millis(30), Box::new(answer_truth(&t, s)))
    }));
    let mut c = config(&server, None);
    c.concurrency = 3;
    let mut labeller = JudgeLabeller::new(&c, collecting_logger().0).unwrap();
    let requests: Vec<LabelRequest> = records
        .iter()
        .map(|r| LabelRequest {
            key: r.id.clone().unwrap(),
            problem: r.problem.clone(),
            steps: r.steps.clone(),
            pool_label: None,
        })
        .collect();
    let out = labeller.label(&requests);
    assert_eq!(out.len(), 12);
    assert!(out
        .iter()
        .zip(&records)
        .all(|(o, r)| o.first_error() == r.label));
    assert_eq!(server.requests(), 12);
    assert!(
        server
            .stats
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            <= 3
    );
}

#[test]
fn majority_vote_over_samples_through_the_labeller_trait() {
    let records = records();
    let t = truth(&records, PromptFormat::ProcessBench);
    // two of three samples give the true index, one says "all correct" (or, for correct
    // solutions, "the first paragraph is wrong")
    let server = JudgeServer::start(Arc::new(move |s: &Seen| {
        let (_, label, _) = t[&s.prompt];
        let wrong = if label < 0 { 0 } else { -1 };
        Reply::Answer {
            content: boxed(if s.nth == 2 { wrong } else { label }),
            completion_tokens: 30,
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server, Some(dir.path().join("cache")));
    c.votes = 3;
    c.format = PromptFormat::ProcessBench;
    let requests: Vec<LabelRequest> = records
        .iter()
        .map(|r| LabelRequest {
            key: r.id.clone().unwrap(),
            problem: r.problem.clone(),
            steps: r.steps.clone(),
            pool_label: None,
        })
        .collect();
    let mut labeller = JudgeLabeller::new(&c, collecting_logger().0).unwrap();
    assert_eq!(labeller.name(), "judge:qwq-test");
    let detailed = labeller.label_detailed(&requests);
    for (o, r) in detailed.iter().zip(&records) {
        assert_eq!(o.status, JudgeStatus::Labelled);
        assert_eq!(o.label, r.label);
        assert_eq!(o.votes.len(), 3);
        assert_eq!(o.votes.iter().filter(|v| **v == r.label).count(), 2);
    }
    assert_eq!(server.requests(), 36);
    let again = labeller.label(&requests);
    assert!(again.iter().zip(&records).all(|(o, r)| *o
        == LabelOutcome::Labelled {
            first_error: r.label.unwrap()
        }));
    assert_eq!(
        server.requests(),
        36,
        "answers already held are not requested again"
    );
    assert_eq!(labeller.accounting().cache_hits, 36);
    assert_reconciles(&labeller.accounting(), 72);
}

#[test]
fn fatal_refusals_stop_the_run_and_every_row_says_why() {
    let records = records();
    let server = JudgeServer::start(Arc::new(|_: &Seen| Reply::Status {
        code: 401,
        body: "{\"error\":\"invalid key\"}".into(),
        retry_after: None,
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let mut c = config(&server, None);
    c.concurrency = 1;
    let summary = label(&input, &dir.path().join("out"), c, collecting_logger().0);
    let rows = read_output(&dir.path().join("out"));
    assert_eq!(rows.len(), 12);
    assert!(rows
        .iter()
        .all(|r| r.status == "failed" && r.reason.as_deref().unwrap().contains("HTTP 401")));
    assert_eq!(
        server.requests(),
        1,
        "no request after the endpoint refused the key"
    );
    assert_reconciles(&summary.judge, 12);
}

#[test]
fn judge_eval_reports_the_judges_own_f1() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    // wrong on record 0 (correct solution called wrong at 0) and record 2 (error at 1 called correct)
    let server = JudgeServer::start(Arc::new(move |s: &Seen| {
        let (i, label, steps) = t[&s.prompt];
        let said = match i {
            0 => 0,
            2 => -1,
            _ => label,
        };
        Reply::Answer {
            content: critique(said, steps),
            completion_tokens: 10,
        }
    }));
    let file = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/judge_records.jsonl"
    ));
    let report = run_judge_eval(&[file], &config(&server, None), collecting_logger().0).unwrap();
    let s = &report.subsets[0];
    assert_eq!(s.subset, "judge_records");
    assert_eq!((s.score.n, s.score.n_error, s.score.n_correct), (12, 9, 3));
    let (acc_err, acc_ok) = (8.0 / 9.0, 2.0 / 3.0);
    assert!((s.score.acc_error.unwrap() - acc_err).abs() < 1e-12);
    assert!((s.score.acc_correct.unwrap() - acc_ok).abs() < 1e-12);
    assert!((report.mean_f1.unwrap() - 2.0 * acc_err * acc_ok / (acc_err + acc_ok)).abs() < 1e-12);
    assert_eq!(report.accounting.requests, 12);
}

/// Runs the real binary with the key in its environment; a misbehaving server echoes the key back
/// in error bodies. The key must reach the server and appear nowhere else.
#[test]
fn the_api_key_never_appears_in_logs_outputs_or_the_cache() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| {
        let (i, label, steps) = t[&s.prompt];
        let echo = format!(
            "{{\"error\":\"bad auth header {}\"}}",
            s.authorization.clone().unwrap_or_default()
        );
        match (i, s.nth) {
            (0, 1) => Reply::Status {
                code: 500,
                body: echo,
                retry_after: None,
            },
            (1, _) => Reply::Status {
                code: 400,
                body: echo,
                retry_after: None,
            },
            (2, _) => Reply::Answer {
                content: format!("I was called with {echo}"),
                completion_tokens: 10,
            },
            _ => Reply::Answer {
                content: critique(label, steps),
                completion_tokens: 10,
            },
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let out = dir.path().join("out");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(["label", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .args([
            "--judge-url",
            &server.url(),
            "--judge-model",
            "qwq-test",
            "--api-key-env",
            "ACTPRM_JUDGE_TEST_KEY",
        ])
        .args([
            "--timeout",
            "10",
            "--retries",
            "2",
            "--concurrency",
            "4",
            "--json",
        ])
        .env("ACTPRM_JUDGE_TEST_KEY", SECRET)
        .output()
        .expect("running actprm");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))),
        "the key is sent"
    );
    assert!(stderr.contains("retry 1"), "the retry was logged: {stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "key in the logs:\n{stdout}\n{stderr}"
    );
    let rows = read_output(&out);
    assert_eq!(rows.len(), 12);
    assert!(
        rows[1].reason.as_deref().unwrap().contains("<redacted>"),
        "{:?}",
        rows[1].reason
    );
    for row in &rows {
        for text in [&row.reason, &row.raw].into_iter().flatten() {
            assert!(!text.contains(SECRET), "key in an output column: {text}");
        }
    }
    let mut files = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("judge-cache/answers.jsonl")),
        "default cache under the output: {files:?}"
    );
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json" || e == "jsonl"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains(SECRET), "key in {}", f.display());
    }
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("--json summary");
    assert_eq!(summary["rows_out"], 12);
}

#[test]
fn the_active_loop_trains_on_judge_labels_when_the_pool_has_none() {
    use actprm::pipeline::active::{run_active, ActiveJob};
    use actprm::pipeline::ScoreJob;
    use actprm::select::Keep;
    use actprm::train::TrainConfig;

    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&t, s)));
    let dir = tempfile::tempdir().unwrap();
    // the pool without its label column: only the judge can label it
    let unlabelled: Vec<LabelledTrajectory> = records
        .iter()
        .map(|r| LabelledTrajectory {
            label: None,
            ..r.clone()
        })
        .collect();
    let input = write_input(dir.path(), &unlabelled, None);
    let out = dir.path().join("active");
    let mut score = ScoreJob::new(vec![input.display().to_string()], out.clone());
    score.batch_rows = 4;
    let job = ActiveJob {
        score,
        output: out.clone(),
        cold_start: Some((4, 7)),
        train: TrainConfig {
            lr: 5e-3,
            warmup_steps: 0,
            seed: 7,
            ..TrainConfig::default()
        },
        selection: Keep::Rate(0.5),
        picks: Default::default(),
        retrain_steps: 0,
        retrain_lr: 1e-3,
        label_budget: None,
        export_every: 1,
        dev: vec![],
        eval_every: 1000,
        resume: false,
        overwrite: false,
        stop_after_rows: None,
        judge: Some(config(&server, Some(out.join("judge-cache")))),
        // the records also carry TRL's prompt / completions / labels
        label_format: actprm::label::LabelFormat::Trl,
        format: Default::default(),
    };
    let summary = run_active(&job).expect("active run with a judge");
    assert_eq!(summary.rows_scored, records.len() as u64);
    // half of each batch of 4 is sent to the judge, and every answer is used
    assert_eq!(summary.labels_used, records.len() as u64 / 2);
    assert_eq!(server.requests(), summary.labels_used);
    assert!(summary.steps > 0);
    assert!(out.join("model/manifest.json").is_file());

    // each judged row's decision holds the judge's (true) label and says who labelled it
    let by_id: HashMap<&str, i32> = records
        .iter()
        .map(|r| (r.id.as_deref().unwrap(), r.label.unwrap()))
        .collect();
    let mut judged = 0;
    for part in std::fs::read_dir(out.join("decisions")).unwrap() {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(part.unwrap().path()).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let label = b
                .column_by_name("label")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone();
            let note = b
                .column_by_name("label_note")
                .unwrap()
                .as_string::<i32>()
                .clone();
            let row = b
                .column_by_name("source_row")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .clone();
            let prompt = b
                .column_by_name("prompt")
                .expect("TRL prompt column")
                .as_string::<i32>()
                .clone();
            let completions = b
                .column_by_name("completions")
                .expect("TRL completions column")
                .as_list::<i32>()
                .clone();
            let step_labels = b
                .column_by_name("labels")
                .expect("TRL labels column")
                .as_list::<i32>()
                .clone();
            for i in 0..b.num_rows() {
                let record = &records[row.value(i) as usize];
                assert_eq!(prompt.value(i), record.problem);
                if label.is_null(i) {
                    assert!(step_labels.is_null(i), "no label, no step labels");
                    continue;
                }
                judged += 1;
                assert_eq!(note.value(i), "labelled by judge:qwq-test");
                let id = record.id.as_deref().unwrap();
                assert_eq!(label.value(i), by_id[id]);
                assert_trl_row(&completions, &step_labels, i, &record.steps, label.value(i));
            }
        }
    }
    assert_eq!(judged, summary.labels_used);
}

#[test]
fn judge_labels_can_be_written_in_trls_layout() {
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&t, s)));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let out = dir.path().join("out");
    let mut job = LabelJob::new(
        vec![input.display().to_string()],
        out.clone(),
        config(&server, None),
        collecting_logger().0,
    );
    job.label_format = actprm::label::LabelFormat::Trl;
    let summary = run_label(&job).unwrap();
    assert_eq!(summary.rows_out, records.len() as u64);
    let mut seen = 0;
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    let batches = parts.iter().flat_map(|part| {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(part).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
    });
    for b in batches {
        let prompt = b.column_by_name("prompt").unwrap().as_string::<i32>();
        let completions = b.column_by_name("completions").unwrap().as_list::<i32>();
        let labels = b.column_by_name("labels").unwrap().as_list::<i32>();
        let judged = b
            .column_by_name("judge_label")
            .unwrap()
            .as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let r = &records[seen];
            seen += 1;
            assert_eq!(prompt.value(i), r.problem);
            let first = judged.value(i);
            assert_eq!(Some(first), r.label, "the judge answered the truth");
            assert_trl_row(completions, labels, i, &r.steps, first);
        }
    }
    assert_eq!(seen, records.len());
}

/// Row `i` of TRL's columns for a trajectory with `steps` and first error `first`: the steps up
/// to the first error, labelled true before it and false at it (all true when -1).
fn assert_trl_row(
    completions: &arrow::array::ListArray,
    labels: &arrow::array::ListArray,
    i: usize,
    steps: &[String],
    first: i32,
) {
    let kept = if first < 0 {
        steps.len()
    } else {
        first as usize + 1
    };
    let written = completions.value(i);
    let written: Vec<&str> = written
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    let expected: Vec<&str> = steps[..kept].iter().map(String::as_str).collect();
    assert_eq!(written, expected, "row {i}: completions");
    let bools: Vec<bool> = labels
        .value(i)
        .as_boolean()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let expected: Vec<bool> = (0..kept).map(|s| first < 0 || s < first as usize).collect();
    assert_eq!(bools, expected, "row {i}: labels");
}

/// `actprm label` of `input` into `out` against `url`, with `extra` flags, and no key in its
/// environment.
fn label_cli(input: &Path, out: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(["label", "--input"])
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--judge-url", url, "--judge-model", "qwq-test"])
        .args(["--api-key-env", "ACTPRM_JUDGE_TEST_UNSET_KEY"])
        .args(extra)
        .env_remove("ACTPRM_JUDGE_TEST_UNSET_KEY")
        .output()
        .expect("running actprm")
}

/// Issue 29 item 5: judge flags that passed the range check and then panicked (a timeout or a
/// Retry-After too large for a `Duration`, a semaphore of 2^64 permits, `2 * concurrency *
/// votes` overflowing) are refused up front, by name, with a non-zero exit and no panic.
#[test]
fn judge_flags_too_large_to_use_are_refused_by_name_not_by_a_panic() {
    let records = records();
    // every request is rate limited with an absurd Retry-After
    let server = JudgeServer::start(Arc::new(|_: &Seen| Reply::Status {
        code: 429,
        body: "{\"error\":\"slow down\"}".into(),
        retry_after: Some("1e25".into()),
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let cases: [(&[&str], &str); 9] = [
        (&["--timeout", "1e30"], "--timeout"),
        (&["--concurrency", "18446744073709551615"], "--concurrency"),
        (
            &["--concurrency", "1152921504606846976", "--votes", "8"],
            "--concurrency",
        ),
        (
            &["--max-retry-after", "1e30", "--retries", "1"],
            "--max-retry-after",
        ),
        (&["--timeout", "86401"], "--timeout"),
        (&["--max-retry-after", "86401"], "--max-retry-after"),
        (&["--concurrency", "1025"], "--concurrency"),
        (
            &["--backoff-max-ms", "18446744073709551615"],
            "--backoff-max-ms",
        ),
        // last: on a build without the bound this one would start a million samples per row
        (&["--votes", "1000000"], "--votes"),
    ];
    for (i, (flags, named)) in cases.into_iter().enumerate() {
        let o = label_cli(
            &input,
            &dir.path().join(format!("out-{i}")),
            &server.url(),
            flags,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && o.status.code() != Some(101),
            "{flags:?} panicked: {err}"
        );
        assert!(!o.status.success(), "{flags:?} was accepted: {err}");
        assert!(
            err.contains(named) && err.contains("at most"),
            "{flags:?}: the refusal names {named} and its limit: {err}"
        );
    }
    assert_eq!(
        server.requests(),
        0,
        "every refusal came before any request"
    );
    // the largest values allowed still run: a one-day timeout and Retry-After bound
    let o = label_cli(
        &input,
        &dir.path().join("out-max"),
        &server.url(),
        &[
            "--timeout",
            "86400",
            "--max-retry-after",
            "0.01",
            "--retries",
            "1",
            "--concurrency",
            "1024",
            "--votes",
            "3",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(server.requests(), 2 * 3 * records.len() as u64);
}

/// Issue 29 item 10: a URL's scheme is case-insensitive (`HTTPS://` is https), and a URL with
/// `user:token@` is never shown with its credentials, refused or not.
#[test]
fn judge_urls_take_any_case_of_scheme_and_never_show_their_credentials() {
    const TOKEN: &str = "tok-5e1f0c-do-not-show";
    for url in [
        format!("HTTPS://judge:{TOKEN}@example.com/v1"),
        "Http://127.0.0.1:8000/v1".to_string(),
        "hTTp://127.0.0.1:8000/v1".to_string(),
    ] {
        let c = JudgeConfig {
            url: url.clone(),
            model: "m".into(),
            ..JudgeConfig::default()
        };
        assert!(c.validate().is_ok(), "{url}: {:?}", c.validate());
    }
    for url in [
        format!("ftp://judge:{TOKEN}@example.com/v1"),
        format!("judge:{TOKEN}@example.com/v1"),
        format!("HTTPX://judge:{TOKEN}@example.com:8000"),
    ] {
        let c = JudgeConfig {
            url: url.clone(),
            model: "m".into(),
            ..JudgeConfig::default()
        };
        let message = c.validate().expect_err("not an http(s) URL").to_string();
        assert!(
            message.contains("***@example.com") && !message.contains(TOKEN),
            "{url}: {message}"
        );
    }
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| answer_truth(&t, s)));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let url = format!("HTTP://judge:{TOKEN}@{}/v1", server.addr);
    let refused = label_cli(
        &input,
        &dir.path().join("refused"),
        &url.replace("HTTP", "gopher"),
        &[],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("***@") && !err.contains(TOKEN), "{err}");
    let out = dir.path().join("out");
    let o = label_cli(&input, &out, &url, &["--json"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "{stderr}"
    );
    assert_eq!(server.requests(), records.len() as u64);
    assert!(read_output(&out).iter().all(|r| r.status == "labelled"));
    let labeller = JudgeLabeller::new(
        &JudgeConfig {
            url,
            ..config(&server, None)
        },
        collecting_logger().0,
    )
    .unwrap();
    let shown = format!("{:?}", labeller.client());
    assert!(shown.contains("***@") && !shown.contains(TOKEN), "{shown}");
}

/// Issue 29 item 14: a response body is read up to a limit, not whole: a body past it (announced
/// by its Content-Length, or found out while reading a chunked one) fails that request with the
/// reason, and the other rows are labelled as usual.
#[test]
fn a_judge_body_over_the_size_limit_fails_its_request_with_the_reason() {
    use actprm::label::judge::client::MAX_BODY_BYTES;
    let records = records();
    let t = truth(&records, PromptFormat::Critique);
    let server = JudgeServer::start(Arc::new(move |s: &Seen| {
        let (i, label, steps) = t[&s.prompt];
        match i {
            // a well-formed answer: without a limit it would be taken
            0 | 1 => Reply::Huge {
                content: format!("{}{}", critique(label, steps), " ".repeat(MAX_BODY_BYTES)),
                chunked: i == 1,
            },
            _ => answer_truth(&t, s),
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records, None);
    let out = dir.path().join("out");
    let summary = label(&input, &out, config(&server, None), collecting_logger().0);
    let rows = read_output(&out);
    assert_eq!(rows.len(), records.len());
    for (i, row) in rows.iter().enumerate().take(2) {
        assert_eq!(row.status, "failed", "row {i}: {row:?}");
        let reason = row.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("16 MiB"), "row {i}: {reason}");
    }
    // row 0's size was announced, row 1's found out by reading
    let reason = |i: usize| rows[i].reason.clone().unwrap_or_default();
    assert!(reason(0).contains("Content-Length"), "{}", reason(0));
    assert!(reason(1).contains("stopped reading"), "{}", reason(1));
    assert!(rows[2..].iter().all(|r| r.status == "labelled"));
    let a = &summary.judge;
    assert_eq!(server.requests(), records.len() as u64, "not retried");
    assert_eq!((a.requests, a.bad_bodies, a.answers), (12, 2, 10), "{a:#?}");
    assert_reconciles(a, 12);
}
