//! The bad-input suite (issue 12): malformed inputs thrown at every entry point, asserting no
//! panic, a clear error that names the file (and row, column or line where there is one), and row
//! conservation: rows in = rows scored + rows quarantined with a reason. Property tests are
//! bounded (a fixed number of cases, small inputs) so `cargo test` stays fast.

mod common;
#[path = "common/judge_server.rs"]
mod judge_server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use actprm::pipeline::{run_score, ScoreJob, Summary};
use arrow::array::{ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use common::*;
use proptest::prelude::*;

/// One tiny-backbone model for the whole file (fast to score with, same I/O contract).
fn tiny() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let model = dir.path().join("tiny");
            let o = actprm(&["tiny-model", "-o", model.to_str().unwrap()]);
            assert!(o.status.success(), "{}", stderr(&o));
            (dir, model)
        })
        .1
}

fn score(input: &Path, out: &Path) -> Result<Summary, String> {
    let mut job = ScoreJob::new(vec![input.display().to_string()], out.to_path_buf());
    job.model = Some(tiny().to_path_buf());
    job.batch_rows = 3;
    run_score(&job, Default::default()).map_err(|e| e.to_string())
}

fn rows_in_dir(dir: &Path, prefix: &str) -> u64 {
    read_parquet_dir(dir, prefix)
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum()
}

/// A succeeded run accounts for every row: scored rows in the parts, rejected rows in rejects/
/// with a reason, unreadable rows listed.
fn assert_conserved(s: &Summary, out: &Path, rows: u64) {
    assert_eq!(s.rows_in, rows, "rows in");
    assert_eq!(s.rows_in, s.rows_scored + s.rows_rejected, "{s:?}");
    assert_eq!(rows_in_dir(out, "part-"), s.rows_scored);
    let quarantined = rows_in_dir(&out.join("rejects"), "rejects-");
    let unreadable: u64 = std::fs::read_to_string(out.join("rejects/unreadable.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rows"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(quarantined + unreadable, s.rows_rejected);
    for b in read_parquet_dir(&out.join("rejects"), "rejects-") {
        let reasons = b.column_by_name("reject_reason").unwrap();
        assert_eq!(reasons.null_count(), 0, "every quarantined row says why");
    }
}

/// A problem cell: null, empty, plain, non-ASCII, or huge.
fn text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => "[a-z0-9 +=.]{1,40}".prop_map(Some),
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => "[\\u{0}-\\u{ffff}]{1,20}".prop_map(Some),
        1 => (1usize..3).prop_map(|mb| Some("9".repeat(mb << 20))),
    ]
}

/// A steps cell: null, empty list, lists with null or empty items, or 10k steps.
fn steps() -> impl Strategy<Value = Option<Vec<Option<String>>>> {
    prop_oneof![
        4 => prop::collection::vec(text(), 1..5).prop_map(Some),
        1 => Just(None),
        1 => Just(Some(vec![])),
        1 => Just(Some(vec![Some("1+1=2.".to_string()); 10_000])),
    ]
}

/// A row: problem cell, steps cell (`None` = null).
type Row = (Option<String>, Option<Vec<Option<String>>>);

fn batch(rows: &[Row]) -> RecordBatch {
    let mut list = ListBuilder::new(StringBuilder::new());
    for (_, st) in rows {
        match st {
            None => list.append(false),
            Some(items) => {
                for x in items {
                    list.values().append_option(x.as_deref());
                }
                list.append(true);
            }
        }
    }
    RecordBatch::try_from_iter(vec![
        (
            "problem",
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0.as_deref()).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        ("steps", Arc::new(list.finish()) as ArrayRef),
    ])
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]

    /// Nulls at every level, empty and huge strings, 10k steps: every row is scored or
    /// quarantined with its reason.
    #[test]
    fn malformed_rows_are_scored_or_quarantined(rows in prop::collection::vec((text(), steps()), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.parquet");
        write_parquet(&input, &batch(&rows));
        let out = dir.path().join("out");
        let s = score(&input, &out).unwrap();
        assert_conserved(&s, &out, rows.len() as u64);
    }

    /// A truncated file or random bytes in it: an error naming the file, or a run that reports
    /// the unreadable rows; never a panic, never a silent loss.
    #[test]
    fn damaged_files_fail_loudly_or_report_what_was_lost(cut in 0.0f64..1.0, flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..8)) {
        let dir = tempfile::tempdir().unwrap();
        let good = prm800k_parquet(dir.path());
        let mut bytes = std::fs::read(&good).unwrap();
        if flips.is_empty() {
            bytes.truncate((bytes.len() as f64 * cut) as usize);
        }
        for (at, value) in &flips {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] ^= value | 1;
        }
        let input = dir.path().join("damaged.parquet");
        std::fs::write(&input, &bytes).unwrap();
        let out = dir.path().join("out");
        match score(&input, &out) {
            Ok(s) => {
                // what the footer still says (0 when it is gone) is accounted for, row by row
                let footer_rows = s.rows_in;
                assert_conserved(&s, &out, footer_rows);
                if s.files_unreadable == 0 && flips.is_empty() {
                    prop_assert_eq!(s.rows_in, 24);
                }
            }
            Err(e) => prop_assert!(e.contains("damaged.parquet"), "{}", e),
        }
    }

    /// Random edits of the shipped pipeline files: located problems, never a panic.
    #[test]
    fn edited_pipeline_files_get_located_errors(
        which in 0usize..5,
        edits in prop::collection::vec((0.0f64..1.0, 0usize..12, "[ -~\\n\\t:{}\\[\\]-]{0,6}"), 1..4),
    ) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut text = std::fs::read_to_string(&files[which % files.len()]).unwrap();
        for (at, delete, insert) in &edits {
            let mut i = (text.len() as f64 * at) as usize;
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + delete).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(i..end, insert);
        }
        let checked = actprm::pipeline::config::check_text(
            "edited.yaml",
            &text,
            &|_| None,
            actprm::pipeline::config::CheckOptions { skip_env: true },
        );
        if let Err(e) = checked {
            let message = e.to_string();
            prop_assert!(message.contains("edited.yaml"), "{}", message);
        }
    }

    /// Any judge answer: a label in range or an unparseable reason, never a panic.
    #[test]
    fn any_judge_answer_parses_or_is_refused(
        answer in prop_oneof![
            any::<String>(),
            "(<analysis_[0-9]{1,40}>[a-z ]{0,10}){0,3}<conclusion>(Correct|Incorrect|x)</conclusion>",
            "\\\\boxed\\{-?[0-9]{1,30}\\}",
            "<think>[a-z]{0,5}(</think>)?\\\\boxed\\{[0-9]\\}",
        ],
        steps in 1usize..6,
    ) {
        for format in [actprm::label::judge::PromptFormat::Critique, actprm::label::judge::PromptFormat::ProcessBench] {
            if let Ok(label) = actprm::label::judge::parse::parse_answer(format, &answer, steps) {
                prop_assert!(label >= -1 && label < steps as i32);
            }
        }
    }
}

/// Mistyped columns: an error naming the file, the column and the expected type, before work.
#[test]
fn mistyped_columns_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("typed.parquet");
    let batch = RecordBatch::try_from_iter(vec![
        (
            "problem",
            Arc::new(Int64Array::from(vec![1i64, 2])) as ArrayRef,
        ),
        (
            "steps",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
    ])
    .unwrap();
    write_parquet(&input, &batch);
    let e = score(&input, &dir.path().join("out")).unwrap_err();
    assert!(e.contains("typed.parquet") && e.contains("problem"), "{e}");
}

/// Judge bodies that are random bytes, truncated JSON or huge numbers: every row still ends with
/// a status and a reason.
#[test]
fn broken_judge_bodies_leave_every_row_with_a_reason() {
    use actprm::label::judge::JudgeConfig;
    use actprm::pipeline::{run_label, LabelJob};
    use judge_server::{JudgeServer, Reply};
    let bodies: Vec<String> = vec![
        "\u{0}\u{1}garbage\u{ff}".into(),
        "{\"choices\": [{\"message\": {\"content\": \"<conclusion>Inc".into(),
        "{\"choices\": [{\"message\": {\"content\": \"\\\\boxed{99999999999999999999}\"}}], \"usage\": {\"completion_tokens\": 18446744073709551615}}".into(),
        "{\"choices\": []}".into(),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in bodies.into_iter().enumerate() {
        let server = JudgeServer::start(Arc::new(move |_| Reply::Status {
            code: 200,
            body: body.clone(),
            retry_after: None,
        }));
        let input = prm800k_parquet(dir.path());
        let config = JudgeConfig {
            url: server.url(),
            model: "m".into(),
            api_key_env: "ACTPRM_TEST_UNSET".into(),
            max_retries: 0,
            ..JudgeConfig::default()
        };
        let out = dir.path().join(format!("out{i}"));
        let job = LabelJob::new(
            vec![input.display().to_string()],
            out.clone(),
            config,
            actprm::report::Log::new(|_: &str| {}),
        );
        let summary = run_label(&job).unwrap();
        assert_eq!(summary.rows_out, 24, "body {i}");
        for b in read_parquet_dir(&out, "part-") {
            let status = b.column_by_name("judge_status").unwrap();
            assert_eq!(status.null_count(), 0);
            let labels = b.column_by_name("judge_label").unwrap();
            let reasons = b.column_by_name("judge_reason").unwrap();
            for r in 0..b.num_rows() {
                assert!(
                    labels.is_valid(r) || reasons.is_valid(r),
                    "body {i}: an unlabelled row without a reason"
                );
            }
        }
    }
}

/// Every write syntax DataFusion accepts, aimed outside the allowed folder (absolute, `file:`,
/// `file://`, relative), plain and under EXPLAIN ANALYZE: all refused, nothing written.
#[test]
fn every_write_syntax_is_guarded() {
    use actprm::sql::session::{execute_statement, parse_statements};
    use actprm::sql::{session, SqlConfig};
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let targets = |name: &str| {
        let p = outside.join(name);
        vec![
            p.display().to_string(),
            format!("file:{}", p.display()),
            format!("file://{}", p.display()),
            // relative: resolved against the working folder (the crate root), outside `allowed`
            format!("relative-{name}"),
        ]
    };
    let mut statements = Vec::new();
    for (n, t) in targets("c.csv").into_iter().enumerate() {
        for format in ["CSV", "PARQUET", "JSON"] {
            statements.push(format!(
                "COPY (SELECT 1 AS a) TO '{t}{n}' STORED AS {format}"
            ));
            statements.push(format!(
                "COPY (SELECT 1 AS a) TO '{t}{n}' STORED AS {format} PARTITIONED BY (a)"
            ));
        }
    }
    for (n, t) in targets("ext/").into_iter().enumerate() {
        statements.push(format!(
            "CREATE EXTERNAL TABLE e{n} (a INT) STORED AS PARQUET LOCATION '{t}{n}/'"
        ));
        statements.push(format!(
            "CREATE UNBOUNDED EXTERNAL TABLE u{n} (a INT) STORED AS CSV LOCATION '{t}{n}.csv'"
        ));
    }
    let explained: Vec<String> = statements
        .iter()
        .filter(|s| s.starts_with("COPY"))
        .map(|s| format!("EXPLAIN ANALYZE {s}"))
        .collect();
    statements.extend(explained);
    for allow in [None, Some(allowed.clone())] {
        let config = SqlConfig {
            allow_write: allow.clone(),
            ..SqlConfig::default()
        };
        runtime.block_on(async {
            let ctx = session(&config);
            for sql in &statements {
                let mut refused = false;
                for statement in parse_statements(sql).unwrap() {
                    match execute_statement(&ctx, &config, statement).await {
                        Err(e) => {
                            refused = e.to_string().contains("write refused");
                            assert!(refused, "{sql}: {e}");
                        }
                        Ok(frame) => {
                            if let Err(e) = frame.collect().await {
                                refused = e.to_string().contains("write refused");
                                assert!(refused, "{sql}: {e}");
                            }
                        }
                    }
                }
                assert!(refused, "{sql} was not refused (allow-write {allow:?})");
            }
            // an in-memory CREATE TABLE AS writes nothing to disk and is allowed
            let plan = parse_statements("CREATE TABLE m AS SELECT 1 AS a").unwrap();
            for st in plan {
                execute_statement(&ctx, &config, st)
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
            }
        });
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );
}
