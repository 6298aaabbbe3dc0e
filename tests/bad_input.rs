//! The bad-input suite (issue 12): malformed inputs thrown at every entry point, asserting no
//! panic, a clear error that names the file (and row, column or line where there is one), and row
//! conservation: rows in = rows scored + rows quarantined with a reason. Property tests are
//! bounded (a fixed number of cases, small inputs) so `cargo test` stays fast.

use crate::common;
use crate::judge_server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
        // the sample's rows, as written (not as the run reports them)
        const WRITTEN_ROWS: u64 = 24;
        prop_assert_eq!(records("prm800k_test_sample.jsonl").len() as u64, WRITTEN_ROWS);
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
            Ok(s) if s.files_unreadable == 0 => {
                // the footer was read: each of the rows the test wrote is scored, quarantined
                // with its reason or listed as unreadable
                assert_conserved(&s, &out, WRITTEN_ROWS);
            }
            // the footer is gone: a run whose only input cannot be read is no run, it fails
            Ok(s) => prop_assert!(false, "a run of one unreadable file succeeded: {:?}", s),
            Err(e) => prop_assert!(e.contains("damaged.parquet"), "{}", e),
        }
    }

    /// Random edits of the shipped pipeline files, then a key no pipeline file has on the first
    /// line: always refused (never a panic), every problem at a line and column inside the
    /// file, and the unknown key exactly at 1:1 whenever the YAML still parses around it.
    #[test]
    fn edited_pipeline_files_get_located_errors(
        which in 0usize..6,
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
        let text = format!("zz_not_a_key: 1\n{text}");
        let checked = actprm::pipeline::config::check_text(
            "edited.yaml",
            &text,
            &|_| None,
            actprm::pipeline::config::CheckOptions { skip_env: true },
        );
        let report = match checked {
            Err(actprm::pipeline::config::ConfigError::Invalid(report)) => report,
            Err(e) => return Err(TestCaseError::fail(format!("not a located report: {e}"))),
            Ok(_) => return Err(TestCaseError::fail(format!("accepted:\n{text}"))),
        };
        let message = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        prop_assert!(!report.problems.is_empty(), "{}", message);
        for p in &report.problems {
            // a problem at the end of the file may sit one past the last line
            let width = lines.get(p.line.wrapping_sub(1)).map_or(0, |l| l.chars().count());
            prop_assert!(p.line >= 1 && p.line <= lines.len() + 1, "line {} of {}: {}", p.line, lines.len(), message);
            prop_assert!(p.col >= 1 && p.col <= width + 1, "column {} of {}: {}", p.col, width, message);
            let located = format!("edited.yaml:{}:{}: {}", p.line, p.col, p.message);
            prop_assert!(message.contains(&located), "{} not in {}", located, message);
            if p.message.contains("zz_not_a_key") {
                prop_assert_eq!((p.line, p.col), (1, 1), "{}", message);
            }
        }
    }

    /// Any judge answer: exactly the label each prompt format reads from it (the critique's
    /// `<conclusion>` and last `<analysis_N>`, ProcessBench's last `\boxed{}`), or refused when
    /// it names no step; never a panic.
    #[test]
    fn any_judge_answer_parses_or_is_refused(
        answer in judge_answer(),
        steps in 1usize..6,
    ) {
        use actprm::label::judge::PromptFormat;
        let JudgeAnswer { text, critique, boxed } = answer;
        for (format, expected) in [(PromptFormat::Critique, critique), (PromptFormat::ProcessBench, boxed)] {
            let got = actprm::label::judge::parse::parse_answer(format, &text, steps).ok();
            let expected = match expected {
                Expected::Label(n) => Some(n).filter(|&n| n >= -1 && n < steps as i32),
                Expected::Refused => None,
                Expected::Unknown => continue,
            };
            prop_assert_eq!(got, expected, "{:?} of {:?} with {} steps", format, text, steps);
        }
    }
}

/// What a prompt format must read from a judge answer: a first-error index (refused when out of
/// range for the row's steps), a refusal, or (arbitrary text holding the format's tags) not known
/// to the test.
#[derive(Debug, Clone, Copy)]
enum Expected {
    Label(i32),
    Refused,
    Unknown,
}

#[derive(Debug, Clone)]
struct JudgeAnswer {
    text: String,
    critique: Expected,
    boxed: Expected,
}

/// The index a `<analysis_N>` number names (paragraphs count from 1; past i32 names none).
fn analysis_label(digits: &str) -> Expected {
    match digits
        .parse::<u128>()
        .ok()
        .and_then(|n| i32::try_from(n).ok())
    {
        Some(n) if n >= 1 => Expected::Label(n - 1),
        _ => Expected::Refused,
    }
}

/// Judge answers built with the label each format must read from them.
fn judge_answer() -> impl Strategy<Value = JudgeAnswer> {
    use Expected::*;
    let critique = (
        prop::collection::vec(("[0-9]{1,3}|[0-9]{10,40}", "[a-z ]{0,10}"), 0..4),
        prop_oneof![
            Just("Correct"),
            Just(" correct. "),
            Just("Incorrect"),
            Just("x")
        ],
    )
        .prop_map(|(analyses, verdict)| {
            let mut text: String = analyses
                .iter()
                .map(|(n, filler)| format!("<analysis_{n}>{filler}"))
                .collect();
            text.push_str(&format!("<conclusion>{verdict}</conclusion>"));
            let critique = if verdict
                .trim()
                .trim_end_matches('.')
                .eq_ignore_ascii_case("correct")
            {
                Label(-1)
            } else {
                analyses.last().map_or(Refused, |(n, _)| analysis_label(n))
            };
            JudgeAnswer {
                text,
                critique,
                boxed: Refused,
            }
        });
    let boxed = ("[a-z ]{0,10}", "-?[0-9]{1,30}", " ?").prop_map(|(lead, value, pad)| {
        let boxed = value
            .parse::<i64>()
            .ok()
            .and_then(|v| i32::try_from(v).ok())
            .map_or(Refused, Label);
        JudgeAnswer {
            text: format!("{lead}\\boxed{{{pad}{value}{pad}}}"),
            critique: Refused,
            boxed,
        }
    });
    let thinking = ("[a-z]{0,5}", any::<bool>(), 0i32..10).prop_map(|(thought, closed, d)| {
        let close = if closed { "</think>" } else { "" };
        JudgeAnswer {
            text: format!("<think>{thought}{close}\\boxed{{{d}}}"),
            critique: Refused,
            // an unclosed <think> means the answer was cut off while still reasoning
            boxed: if closed { Label(d) } else { Refused },
        }
    });
    let arbitrary = any::<String>().prop_map(|text| {
        let known = |tag: &str| if text.contains(tag) { Unknown } else { Refused };
        JudgeAnswer {
            critique: known("<conclusion>"),
            boxed: known("\\boxed{"),
            text,
        }
    });
    prop_oneof![arbitrary, critique, boxed, thinking]
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

/// Judge bodies that are random bytes, truncated JSON, an out-of-range answer with a huge token
/// count, or no choices: no row gets a label, and every row ends with a status and a reason.
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
                // none of these bodies holds an answer that names a step
                assert!(labels.is_null(r), "body {i}: row {r} got a label");
                assert!(reasons.is_valid(r), "body {i}: row {r} has no reason");
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

// ---- hostile checkpoint folders for `actprm import` (issue 29) ----

/// The shipped tiny checkpoint `name` (tests/data/hf).
fn hf(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hf")
        .join(name)
}

/// Rewrites `config.json` of `dir` through `edit`.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites the header of the safetensors file `path` through `edit`; the data stays as it was
/// (offsets count from the end of the header, so a header of another length is fine).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Makes tensor `name` a scalar whose 4 bytes lie where its data began (a consistent header).
fn scalar_tensor(header: &mut serde_json::Map<String, serde_json::Value>, name: &str) {
    let t = header[name].as_object_mut().unwrap();
    let start = t["data_offsets"][0].as_u64().unwrap();
    t.insert("shape".into(), serde_json::json!([]));
    t.insert("data_offsets".into(), serde_json::json!([start, start + 4]));
}

/// `tokenizer_config.json` of `dir` with `template` as its chat template.
fn set_template(dir: &Path, template: &str) {
    edit_json(&dir.join("tokenizer_config.json"), |c| {
        c.insert("chat_template".into(), template.into());
    });
}

/// Address space an import child may map (`ulimit -v`, KiB): far above what the tiny fixtures
/// need, far below this machine's memory, so an unbounded allocation fails in the child.
const IMPORT_MEMORY_KIB: u64 = 6 << 20;

/// How an `actprm import` child ended.
struct Ended {
    /// `None`: killed by a signal (an abort on a failed allocation) or past the deadline.
    code: Option<i32>,
    timed_out: bool,
    stderr: String,
}

/// `actprm import --from FROM -o OUT` in a child under [`IMPORT_MEMORY_KIB`], killed past
/// `deadline`.
fn import_child(from: &Path, out: &Path, env: &[(&str, &str)], deadline: Duration) -> Ended {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {IMPORT_MEMORY_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_actprm"))
        .args(["import", "--from"])
        .arg(from)
        .arg("-o")
        .arg(out)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut pipe).take(1 << 20).read_to_end(&mut text);
        // drain the rest, so the child never blocks on a full pipe
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&text).into_owned()
    });
    let started = Instant::now();
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.code(), false);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ended {
        code,
        timed_out,
        stderr: reader.join().unwrap(),
    }
}

/// Hidden staging folders (`.NAME.tmp-*`) an import of `out` left beside it.
fn staging_left(out: &Path) -> Vec<String> {
    let prefix = format!(".{}.tmp-", out.file_name().unwrap().to_str().unwrap());
    std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// What is wrong with how an import ended (empty: a clean refusal); `expect`: what its message
/// must name.
fn refusal_problems(ended: &Ended, out: &Path, expect: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if ended.timed_out {
        problems.push("did not finish before the deadline".to_string());
    }
    match ended.code {
        None if !ended.timed_out => problems.push("was killed by a signal".into()),
        Some(0) => problems.push("succeeded".into()),
        Some(101) => problems.push("panicked (exit 101)".into()),
        _ => {}
    }
    if ended.stderr.contains("panicked") || ended.stderr.contains("memory allocation") {
        problems.push("crashed".into());
    }
    for word in expect {
        if !ended.stderr.contains(word) {
            problems.push(format!("the message does not name {word:?}"));
        }
    }
    let left = staging_left(out);
    if !left.is_empty() {
        problems.push(format!("left staging folders {left:?}"));
    }
    if out.exists() && ended.code != Some(0) {
        problems.push("left a model directory".into());
    }
    problems
}

type Hostile = (
    &'static str,
    Box<dyn Fn(&Path) -> PathBuf>,
    Vec<&'static str>,
);

/// Checkpoint folders built to crash, exhaust memory or hang the importer, each with the words
/// its refusal must hold.
fn hostile_folders() -> Vec<Hostile> {
    use serde_json::json;
    let config = |fixture: &'static str, key: &'static str, value: serde_json::Value| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy(fixture, dir);
            edit_json(&from.join("config.json"), |c| {
                c.insert(key.into(), value.clone());
            });
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    let header = |fixture: &'static str,
                  edit: fn(&mut serde_json::Map<String, serde_json::Value>)| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy(fixture, dir);
            edit_header(&from.join("model.safetensors"), edit);
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    let template = |template: &'static str| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy("qwen-prm", dir);
            set_template(&from, template);
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    // `file` of the fixture replaced by a link to `target`
    let link = |fixture: &'static str, file: &'static str, target: &'static str| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy(fixture, dir);
            std::fs::remove_file(from.join(file)).unwrap();
            std::os::unix::fs::symlink(target, from.join(file)).unwrap();
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    let fifo = |fixture: &'static str, file: &'static str| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy(fixture, dir);
            std::fs::remove_file(from.join(file)).unwrap();
            let made = std::process::Command::new("mkfifo")
                .arg(from.join(file))
                .status()
                .unwrap();
            assert!(made.success());
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    // a shard of the sharded fixture named (or linked) outside the folder
    let shard = |how: &'static str| {
        Box::new(move |dir: &Path| {
            let from = fixture_copy("qwen-prm-sharded", &dir.join("ckpt"));
            let first = "model-00001-of-00002.safetensors";
            let outside = dir.join("outside.safetensors");
            std::fs::rename(from.join(first), &outside).unwrap();
            let name = match how {
                "parent" => "../outside.safetensors".to_string(),
                "absolute" => outside.display().to_string(),
                _ => {
                    std::os::unix::fs::symlink(&outside, from.join(first)).unwrap();
                    first.to_string()
                }
            };
            edit_json(&from.join("model.safetensors.index.json"), |index| {
                for v in index["weight_map"].as_object_mut().unwrap().values_mut() {
                    if v == first {
                        *v = name.clone().into();
                    }
                }
            });
            from
        }) as Box<dyn Fn(&Path) -> PathBuf>
    };
    let nested = "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in \
                  range(100000) %}{% endfor %}{% endfor %}{% endfor %}";
    let flood = "{% for a in range(100000) %}{% for b in range(100000) %}{{ messages }}{% endfor \
                 %}{% endfor %}";
    let out_of_order = "{{ messages[1].content }}\u{E000}STEP2\u{E000}<extra_0>\u{E000}STEP1\
                        \u{E000}<extra_0>\u{E000}STEP3\u{E000}<extra_0>";
    vec![
        (
            "num_key_value_heads 0",
            config("qwen-prm", "num_key_value_heads", json!(0)),
            vec!["config.json", "num_key_value_heads is 0"],
        ),
        (
            "num_key_value_heads 3 of 4 heads",
            config("qwen-prm", "num_key_value_heads", json!(3)),
            vec!["config.json", "num_key_value_heads is 3"],
        ),
        (
            "num_attention_heads 0",
            config("qwen-prm", "num_attention_heads", json!(0)),
            vec!["config.json", "num_attention_heads is 0"],
        ),
        (
            "head_dim 65536",
            config("qwen-prm", "head_dim", json!(65536)),
            vec!["config.json", "head_dim is 65536"],
        ),
        (
            "hidden_size 2^40",
            config("qwen-prm", "hidden_size", json!(1u64 << 40)),
            vec!["config.json", "hidden_size is 1099511627776"],
        ),
        (
            "max_position_embeddings 0",
            config("qwen-prm", "max_position_embeddings", json!(0)),
            vec!["config.json", "max_position_embeddings is 0"],
        ),
        (
            "vocab_size as a string",
            config("qwen-prm", "vocab_size", json!("704")),
            vec!["config.json", "vocab_size is \"704\""],
        ),
        (
            "data_offsets past u64",
            header("qwen-prm", |h| {
                h["model.norm.weight"]["data_offsets"] = json!([u64::MAX - 7, u64::MAX]);
            }),
            vec![
                "model.safetensors",
                "model.norm.weight",
                "18446744073709551608",
            ],
        ),
        (
            "a shape whose product overflows",
            header("qwen-prm", |h| {
                h["score.0.weight"]["shape"] = json!([1u64 << 32, 1u64 << 32, 16]);
            }),
            vec![
                "model.safetensors",
                "score.0.weight",
                "[4294967296, 4294967296, 16]",
            ],
        ),
        (
            "data_offsets too short for the shape",
            header("qwen-prm", |h| {
                h["score.2.bias"]["shape"] = json!([1000]);
            }),
            vec!["model.safetensors", "score.2.bias", "[1000]"],
        ),
        (
            "a scalar ensemble head",
            header("actprm", |h| scalar_tensor(h, "score.model.nn1.weight")),
            vec!["model.safetensors", "score.model.nn1.weight", "shape []"],
        ),
        (
            "a scalar language model head",
            header("math-shepherd", |h| scalar_tensor(h, "lm_head.weight")),
            vec!["model.safetensors", "lm_head.weight", "shape []"],
        ),
        (
            "a chat template printing the steps out of order",
            template(out_of_order),
            vec!["tokenizer_config.json", "out of order"],
        ),
        (
            "a chat template that never ends",
            template(nested),
            vec![
                "tokenizer_config.json",
                "ran more than 10000000 instructions",
            ],
        ),
        (
            "a chat template that writes without end",
            template(flood),
            vec!["tokenizer_config.json", "writes more than"],
        ),
        (
            "a shard named ../",
            shard("parent"),
            vec!["model.safetensors.index.json", "../outside.safetensors"],
        ),
        (
            "a shard named by an absolute path",
            shard("absolute"),
            vec![
                "model.safetensors.index.json",
                "outside.safetensors",
                "absolute",
            ],
        ),
        (
            "a shard linked outside the folder",
            shard("link"),
            vec![
                "model-00001-of-00002.safetensors",
                "outside the checkpoint folder",
            ],
        ),
        (
            "config.json linked to /dev/zero",
            link("qwen-prm", "config.json", "/dev/zero"),
            vec!["config.json", "not a regular file"],
        ),
        (
            "tokenizer.json linked to /dev/zero",
            link("qwen-prm", "tokenizer.json", "/dev/zero"),
            vec!["tokenizer.json", "not a regular file"],
        ),
        (
            "model.safetensors.index.json linked to /dev/zero",
            link(
                "qwen-prm-sharded",
                "model.safetensors.index.json",
                "/dev/zero",
            ),
            vec!["model.safetensors.index.json", "not a regular file"],
        ),
        (
            "tokenizer_config.json a FIFO",
            fifo("qwen-prm", "tokenizer_config.json"),
            vec!["tokenizer_config.json", "a FIFO"],
        ),
        (
            "model.safetensors a FIFO",
            fifo("qwen-prm", "model.safetensors"),
            vec!["model.safetensors", "a FIFO"],
        ),
        (
            "config.json of 65 MiB",
            Box::new(|dir: &Path| {
                let from = fixture_copy("qwen-prm", dir);
                let mut text = std::fs::read(from.join("config.json")).unwrap();
                text.resize(text.len() + (65 << 20), b' ');
                std::fs::write(from.join("config.json"), text).unwrap();
                from
            }),
            vec!["config.json", "64 MiB"],
        ),
    ]
}

/// Every hostile folder is refused with a message naming the file, the key or tensor and the
/// value: no panic, no unbounded memory (the child runs under an address-space cap), no hang
/// (killed past a deadline), and no staging folder left behind.
#[test]
fn hostile_checkpoint_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for (i, (name, build, expect)) in hostile_folders().into_iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        let from = build(&case.join("from"));
        let out = case.join("model");
        let ended = import_child(&from, &out, &[], Duration::from_secs(30));
        let problems = refusal_problems(&ended, &out, &expect);
        if !problems.is_empty() {
            failed.push(format!(
                "{name}: {}\n    stderr: {}",
                problems.join("; "),
                ended.stderr.trim().replace('\n', "\n    ")
            ));
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

/// A panic while the model is written (a failpoint) still removes the staging folder.
#[test]
fn an_import_that_panics_leaves_no_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let ended = import_child(
        &hf("qwen-prm"),
        &out,
        &[("ACTPRM_FAILPOINT", "import-write")],
        Duration::from_secs(60),
    );
    assert_eq!(ended.code, Some(101), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("failpoint import-write"),
        "{}",
        ended.stderr
    );
    assert_eq!(staging_left(&out), Vec::<String>::new());
    assert!(!out.exists());
}

/// A Hugging Face cache snapshot (`snapshots/REV/` whose files link into the repository's
/// `blobs/`, as `huggingface-cli download` leaves it) still imports: its weights resolve outside
/// the snapshot folder, but inside its repository's blobs.
#[test]
fn a_hugging_face_cache_snapshot_imports() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("models--org--prm");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    for entry in std::fs::read_dir(hf("qwen-prm")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::copy(&path, repo.join("blobs").join(format!("blob-{name}"))).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob-{name}"), snapshot.join(&name))
            .unwrap();
    }
    let out = dir.path().join("model");
    let ended = import_child(&snapshot, &out, &[], Duration::from_secs(60));
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert!(out.join("backbone.onnx").is_file());
}

/// One random edit of a fixture: a `config.json` key, or a field of one tensor's header entry
/// (which tensor: a fraction of the sorted names).
#[derive(Debug, Clone)]
enum FolderEdit {
    Config(&'static str, serde_json::Value),
    Header(f64, &'static str, serde_json::Value),
}

const EDITED_KEYS: [&str; 15] = [
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "hidden_act",
    "num_ensemble",
    "rr_token_id",
    "architectures",
];

/// Zero, negative, huge, fractional and wrongly typed values.
fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(3)),
        Just(json!(65536)),
        Just(json!(1u64 << 40)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(0.5)),
        Just(json!("x")),
        Just(json!(null)),
        Just(json!([])),
        Just(json!({})),
        Just(json!(true)),
        (0u64..100_000).prop_map(|n| json!(n)),
    ]
}

fn header_field() -> impl Strategy<Value = (&'static str, serde_json::Value)> {
    use serde_json::json;
    prop_oneof![
        hostile_value().prop_map(|v| ("shape", v)),
        prop_oneof![
            Just(json!([])),
            Just(json!([0])),
            Just(json!([-1])),
            Just(json!([u64::MAX, u64::MAX])),
            Just(json!([1u64 << 32, 1u64 << 32, 16])),
            prop::collection::vec(0u64..5000, 0..4).prop_map(|v| json!(v)),
        ]
        .prop_map(|v| ("shape", v)),
        hostile_value().prop_map(|v| ("data_offsets", v)),
        prop_oneof![
            Just(json!([0, u64::MAX])),
            Just(json!([u64::MAX, u64::MAX])),
            Just(json!([u64::MAX - 7, u64::MAX])),
            Just(json!([100, 0])),
            Just(json!([0])),
            (0u64..2_000_000, 0u64..2_000_000).prop_map(|(a, b)| json!([a, b])),
        ]
        .prop_map(|v| ("data_offsets", v)),
        prop_oneof![
            Just(json!("I64")),
            Just(json!("F64")),
            Just(json!("U8")),
            Just(json!("BF16")),
            Just(json!("F16")),
            Just(json!("??")),
            Just(json!(7)),
        ]
        .prop_map(|v| ("dtype", v)),
    ]
}

fn folder_edit() -> impl Strategy<Value = FolderEdit> {
    prop_oneof![
        (0..EDITED_KEYS.len(), hostile_value())
            .prop_map(|(k, v)| FolderEdit::Config(EDITED_KEYS[k], v)),
        (0.0f64..1.0, header_field()).prop_map(|(at, (field, v))| FolderEdit::Header(at, field, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 16, ..ProptestConfig::default() })]

    /// Random hostile values in `config.json` and in the safetensors header: `import` succeeds
    /// or refuses, never panics, stays under the memory cap and ends in time.
    #[test]
    fn edited_checkpoints_never_crash_import(
        fixture in 0usize..4,
        edits in prop::collection::vec(folder_edit(), 1..4),
    ) {
        let name = ["qwen-prm", "actprm", "math-shepherd", "rlhflow"][fixture];
        let dir = tempfile::tempdir().unwrap();
        let from = fixture_copy(name, &dir.path().join("from"));
        for edit in &edits {
            match edit {
                FolderEdit::Config(key, value) => edit_json(&from.join("config.json"), |c| {
                    c.insert(key.to_string(), value.clone());
                }),
                FolderEdit::Header(at, field, value) => edit_header(&from.join("model.safetensors"), |h| {
                    let names: Vec<String> = h.keys().filter(|k| *k != "__metadata__").cloned().collect();
                    let tensor = &names[((names.len() as f64 * at) as usize).min(names.len() - 1)];
                    h[tensor.as_str()][*field] = value.clone();
                }),
            }
        }
        let out = dir.path().join("model");
        let ended = import_child(&from, &out, &[], Duration::from_secs(60));
        prop_assert!(!ended.timed_out, "did not end in 60 s: {}", ended.stderr);
        prop_assert!(ended.code.is_some(), "killed by a signal: {}", ended.stderr);
        prop_assert_ne!(ended.code, Some(101), "{}", ended.stderr);
        prop_assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
        prop_assert_eq!(staging_left(&out), Vec::<String>::new());
        if ended.code != Some(0) {
            prop_assert!(!out.exists(), "a refused import left a model directory");
        }
    }
}
