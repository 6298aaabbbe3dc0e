//! Issue 12: every hole an adversarial review found, each pinned by a test that failed before its
//! fix (the item number of the issue is in each test's name). They run the real binary or the
//! real library on real records; docs/reliability.md lists the promise each one pins.

use crate::common;
use crate::judge_server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;

fn actprm_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("actprm runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rows (problem, steps) as Parquet `id, problem, steps`; `None` problems are nulls.
fn rows_parquet(path: &Path, rows: &[(Option<&str>, Vec<&str>)]) {
    let mut steps = ListBuilder::new(StringBuilder::new());
    for (_, st) in rows {
        for x in st {
            steps.values().append_value(x);
        }
        steps.append(true);
    }
    let ids = StringArray::from_iter_values((0..rows.len()).map(|i| format!("r{i}")));
    let problems = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(ids) as ArrayRef),
        ("problem", Arc::new(problems) as ArrayRef),
        ("steps", Arc::new(steps.finish()) as ArrayRef),
    ])
    .unwrap();
    write_parquet(path, &batch);
}

/// Rewrites a Parquet file with only its first row (a file that lost rows).
fn keep_first_row(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    let first = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .slice(0, 1);
    write_parquet(path, &first);
}

// ---- item 1: SQL writes ----------------------------------------------------------------------

#[test]
fn item_01_sql_file_urls_cannot_escape_allow_write() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let outside = dir.path().join("outside.csv");
    for target in [
        format!("file:{}", outside.display()),
        format!("file://{}", outside.display()),
    ] {
        // the case: writes allowed under the working folder, `file:/...` read as a
        // relative path inside it, while DataFusion writes to the absolute path
        let q = format!("COPY (SELECT 1 AS a) TO '{target}' STORED AS CSV");
        let o = Command::new(env!("CARGO_BIN_EXE_actprm"))
            .current_dir(&allowed)
            .args(["sql", "--allow-write", ".", &q])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{target} was written");
        assert!(
            stderr(&o).contains("outside the allowed output folder"),
            "{}",
            stderr(&o)
        );
        assert!(!outside.exists(), "{target} escaped --allow-write");
    }
}

// ---- item 2: features with an all-rejected first batch ---------------------------------------

#[test]
fn item_02_features_take_their_dimension_from_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    rows_parquet(
        &input,
        &[
            (None, vec!["a"]),
            (None, vec!["b"]),
            (Some("What is 2+2?"), vec!["2+2=4.", "So 4."]),
            (Some("What is 3+3?"), vec!["3+3=6."]),
        ],
    );
    let features = dir.path().join("f.arrow");
    let o = actprm(&[
        "score",
        "-i",
        s(&input),
        "-o",
        s(&dir.path().join("out")),
        "--batch-rows",
        "2",
        "--features",
        s(&features),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (dim, rows) = actprm::formats::features::read_features(&features).unwrap();
    assert_eq!(dim, 384);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows.iter().map(|r| r.features.len()).collect::<Vec<_>>(),
        vec![2 * 384, 384]
    );
}

// ---- item 3: a crashed stage fails the run ---------------------------------------------------

#[test]
fn item_03_a_crashed_reader_or_tokeniser_fails_the_run() {
    // failpoints (src/failpoint.rs) are compiled in debug builds only, and the binary under test
    // is built with this test's profile: under --release there is nothing to crash
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED item_03: this build has no failpoints (a release build); run it without --release");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    for (point, stage) in [("tokenise:2", "tokenise"), ("read:3", "read")] {
        let out = dir.path().join(point.replace(':', "-"));
        let o = actprm_env(
            &["score", "-i", s(&input), "-o", s(&out), "--batch-rows", "5"],
            &[("ACTPRM_FAILPOINT", point)],
        );
        assert!(
            !o.status.success(),
            "{point}: a crashed stage was reported as success"
        );
        assert!(
            stderr(&o).contains(&format!("the {stage} stage crashed")),
            "{point}: {}",
            stderr(&o)
        );
        assert!(
            !out.join("summary.json").exists(),
            "{point}: no summary for a failed run"
        );
    }
    // the same run without the fault reconciles with the file footers
    let out = dir.path().join("clean");
    let o = actprm(&["score", "-i", s(&input), "-o", s(&out), "--batch-rows", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["rows_in"], 24);
}

// ---- item 4: judge answers that name no paragraph --------------------------------------------

#[test]
fn item_04_unparseable_judge_answers_are_recorded_never_a_panic_or_a_wrong_label() {
    use actprm::label::judge::JudgeConfig;
    use actprm::pipeline::{run_label, LabelJob};
    use judge_server::{JudgeServer, Reply, Seen};
    let answers = [
        "<analysis_1>ok</analysis_1><analysis_2147483648>bad</analysis_2147483648><conclusion>Incorrect</conclusion>",
        "<analysis_0>bad</analysis_0><conclusion>Incorrect</conclusion>",
    ];
    let server = JudgeServer::start(Arc::new(move |seen: &Seen| Reply::Answer {
        content: answers[usize::from(seen.prompt.contains("3+3"))].to_string(),
        completion_tokens: 10,
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    rows_parquet(
        &input,
        &[
            (Some("What is 2+2?"), vec!["2+2=4.", "So 4."]),
            (Some("What is 3+3?"), vec!["3+3=6."]),
        ],
    );
    let config = JudgeConfig {
        url: server.url(),
        model: "m".into(),
        api_key_env: "ACTPRM_TEST_UNSET".into(),
        max_retries: 0,
        cache: Some(dir.path().join("cache")),
        ..JudgeConfig::default()
    };
    // twice: the second run reads the cached answers and must not fail on them either
    for run in ["run1", "run2"] {
        let job = LabelJob::new(
            vec![s(&input).to_string()],
            dir.path().join(run),
            config.clone(),
            actprm::report::Log::new(|_: &str| {}),
        );
        let summary = run_label(&job).unwrap();
        assert_eq!(summary.rows_by_status.get("unparseable"), Some(&2), "{run}");
        let out = read_parquet_dir(&dir.path().join(run), "part-");
        let b = &out[0];
        let labels = b.column_by_name("judge_label").unwrap();
        assert_eq!(
            labels.null_count(),
            2,
            "no label from an answer naming no step"
        );
        let reasons = b.column_by_name("judge_reason").unwrap().as_string::<i32>();
        assert!(reasons
            .iter()
            .all(|r| r.unwrap().contains("names no paragraph")));
    }
    assert_eq!(
        server.requests(),
        2,
        "the second run was served from the cache"
    );
}

// ---- item 5: one label derivation ------------------------------------------------------------

#[test]
fn item_05_prm800k_ratings_mean_the_same_on_every_path() {
    use actprm::label::{first_error_labels, LabelColumn};
    // real PRM800K rows of each ratings shape, with their dataset label removed so the ratings
    // themselves are read: [1,-1], all 1, a 0 and no -1, a 0 before the -1
    let text = std::fs::read_to_string(data("prm800k_ratings_shapes.jsonl")).unwrap();
    let mut expected = Vec::new();
    let mut stripped = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        expected.push(v["label"].as_i64().unwrap() as i32);
        v.as_object_mut().unwrap().remove("label");
        stripped += &format!("{v}\n");
    }
    assert_eq!(expected, vec![1, -1, -1, 4]);
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("ratings.jsonl");
    std::fs::write(&jsonl, &stripped).unwrap();
    let records = actprm::source::jsonl::read_labelled(&jsonl).unwrap();
    let from_jsonl: Vec<i32> = records.iter().map(|r| r.label.unwrap()).collect();
    assert_eq!(from_jsonl, expected, "JSON Lines path");

    let mut ratings = ListBuilder::new(arrow::array::Int64Builder::new());
    for line in stripped.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for r in v["ratings"].as_array().unwrap() {
            ratings.values().append_value(r.as_i64().unwrap());
        }
        ratings.append(true);
    }
    let batch =
        RecordBatch::try_from_iter(vec![("ratings", Arc::new(ratings.finish()) as ArrayRef)])
            .unwrap();
    let steps: Vec<usize> = records.iter().map(|r| r.steps.len()).collect();
    let from_pool =
        first_error_labels(&batch, &LabelColumn::Ratings("ratings".into()), &steps).unwrap();
    assert_eq!(
        from_pool,
        expected.iter().map(|&l| Some(l)).collect::<Vec<_>>(),
        "Parquet pool path"
    );
}

// ---- item 6: range checks --------------------------------------------------------------------

#[test]
fn item_06_zero_and_out_of_range_sizes_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    let cases: [(&[&str], &str); 5] = [
        (
            &["score", "--batch-rows", "0"],
            "batch_rows (--batch-rows) must be at least 1, got 0",
        ),
        (
            &["score", "--max-batch", "0"],
            "max_batch (--max-batch) must be at least 1, got 0",
        ),
        (
            &["filter", "--batch-rows", "0"],
            "batch_rows (--batch-rows) must be at least 1, got 0",
        ),
        (
            &["filter", "--keep-rate", "7"],
            "keep_rate (--keep-rate) must be in (0, 1], got 7",
        ),
        (
            &["active", "--export-every", "0"],
            "export_every (--export-every) must be at least 1, got 0",
        ),
    ];
    for (args, message) in cases {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-i", s(&input), "-o", s(&out)]);
        let o = actprm(&all);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(
            !out.join("units").exists() && !out.join("summary.json").exists(),
            "{args:?} wrote output before refusing"
        );
    }
    // a pipeline file goes through the same check
    let file = dir.path().join("zero.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:\n  s:\n    type: parquet\n    paths: [\"{}\"]\ntransforms:\n  scored:\n    type: score\n    inputs: [s]\n    batch_rows: 0\nsinks:\n  out:\n    type: parquet\n    inputs: [scored]\n    path: {}\n",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(!o.status.success());
    // the same check and message as the flag's, located in the file
    assert!(
        stderr(&o).contains(
            "zero.yaml:9:17: `batch_rows` in transform `scored` (score) must be at least 1, got 0"
        ),
        "{}",
        stderr(&o)
    );
}

// ---- items 7 and 8: filter resume and shards -------------------------------------------------

fn filter_run<'a>(model: &'a str, corpus: &'a str, out: &'a str, extra: &[&'a str]) -> Output {
    let mut args = filter_args(model, corpus, out);
    args.extend(extra);
    actprm(&args)
}

#[test]
fn item_07_filter_resume_checks_settings_paths_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 1200, 3, 200);
    let (model, corpus_s) = (s(&model), s(&corpus));
    let straight = dir.path().join("straight");
    let o = filter_run(model, corpus_s, s(&straight), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = ids_in(&straight.join("kept"), "");

    // the same corpus spelled another way names the same units: nothing is redone
    let dotted = format!("{}/./", corpus.display());
    let o = filter_run(model, &dotted, s(&straight), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["units_this_run"], 0, "{again}");
    assert_eq!(
        ids_in(&straight.join("kept"), ""),
        expected,
        "no duplicates"
    );

    // other settings are refused, naming what changed; --restart discards the earlier run
    let o = filter_run(model, corpus_s, s(&straight), &["--delta-std", "0.2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("other inputs or settings")
            && stderr(&o).contains("--delta-std: 0.01 -> 0.2"),
        "{}",
        stderr(&o)
    );
    let o = filter_run(model, corpus_s, s(&straight), &["--restart"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ids_in(&straight.join("kept"), ""), expected);

    // a committed unit whose kept file vanished, or lost rows, is redone, not trusted
    let kept: Vec<PathBuf> = std::fs::read_dir(straight.join("kept"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::remove_file(&kept[0]).unwrap();
    keep_first_row(&kept[1]);
    let o = filter_run(model, corpus_s, s(&straight), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("redoing the unit"), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["units_this_run"], 2, "{again}");
    assert_eq!(ids_in(&straight.join("kept"), ""), expected);
}

#[test]
fn item_08_shards_share_one_output_folder_at_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 8000, 4, 250);
    let whole = dir.path().join("whole");
    assert!(filter_run(s(&model), s(&corpus), s(&whole), &[])
        .status
        .success());
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let spawn = |shard: &str| {
        Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args([
                "filter",
                "-i",
                s(&corpus),
                "-o",
                s(&shared),
                "--model",
                s(&model),
                "--keep-rate",
                "0.6",
                "--batch-rows",
                "50",
                "--shard",
                shard,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // B starts while A is mid-run (A has committed a unit and is writing the next)
    let a = spawn("0/2");
    let started = std::time::Instant::now();
    while std::fs::read_dir(shared.join("kept")).map_or(0, |d| d.count()) == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "shard 0 never committed a unit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let b = spawn("1/2");
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        ids_in(&shared.join("kept"), ""),
        ids_in(&whole.join("kept"), "")
    );
    let o = actprm(&["filter-verify", s(&shared), "-i", s(&corpus)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // two processes of one shard never run together
    let lock = std::fs::File::open(shared.join(".lock-shard-0-of-2")).unwrap();
    lock.lock().unwrap();
    let o = filter_run(s(&model), s(&corpus), s(&shared), &["--shard", "0/2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another actprm filter is running shard 0/2"));
}

#[test]
fn filter_verify_finds_duplicates_missing_files_and_wrong_counts() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 600, 2, 150);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for out in [&a, &b] {
        assert!(filter_run(s(&model), s(&corpus), s(out), &[])
            .status
            .success());
    }
    let verify = |outs: &[&Path]| {
        let mut args = vec!["filter-verify"];
        args.extend(outs.iter().map(|p| s(p)));
        args.extend(["-i", s(&corpus)]);
        actprm(&args)
    };
    assert!(verify(&[&a]).status.success());
    // every unit committed twice
    let o = verify(&[&a, &b]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("committed 2 times"), "{}", stderr(&o));
    // a kept file missing
    let kept: Vec<PathBuf> = std::fs::read_dir(a.join("kept"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::remove_file(&kept[0]).unwrap();
    let o = verify(&[&a]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a readable Parquet file") || stderr(&o).contains("No such file"),
        "{}",
        stderr(&o)
    );
    // a row count that disagrees with the record
    let kept_b: Vec<PathBuf> = std::fs::read_dir(b.join("kept"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    keep_first_row(&kept_b[0]);
    let o = verify(&[&b]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has 1 rows, its commit record says"),
        "{}",
        stderr(&o)
    );
}

// ---- item 9: the active loop's commit point --------------------------------------------------

fn active_args<'a>(pool: &'a str, out: &'a str, model: &'a str) -> Vec<&'a str> {
    vec![
        "active",
        "-i",
        pool,
        "-o",
        out,
        "--model",
        model,
        "--cold-start",
        "4",
        "--keep-rate",
        "0.3",
        "--batch-rows",
        "40",
        "--export-every",
        "2",
        "--lr",
        "0.01",
        "--warmup",
        "0",
    ]
}

/// (source_file, source_row) -> (selected, label used, scorer version)
fn active_decisions(out: &Path) -> Vec<(String, u64, bool, bool, String)> {
    let mut rows = Vec::new();
    for b in read_parquet_dir(&out.join("decisions"), "decisions-") {
        let file = b.column_by_name("source_file").unwrap().as_string::<i32>();
        let row = b
            .column_by_name("source_row")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let sel = b.column_by_name("selected").unwrap().as_boolean();
        let used = b.column_by_name("label_used").unwrap().as_boolean();
        let ver = b
            .column_by_name("model_version")
            .unwrap()
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((
                file.value(i).to_string(),
                row.value(i),
                sel.value(i),
                used.value(i),
                ver.value(i).to_string(),
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn item_09_active_loop_resumes_exactly_after_crashes_at_its_commit_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let pool = corpus(dir.path(), 2400, 2, 200);
    let (model, pool) = (s(&model), s(&pool));
    let straight = dir.path().join("straight");
    let o = actprm(&active_args(pool, s(&straight), model));
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = active_decisions(&straight);
    assert_eq!(expected.len(), 2400);
    let scored = ids_in(&straight.join("scored"), "part-");
    assert_eq!(scored.len(), 2400);

    // a crash between writing a checkpoint's parts and its loop-state.json, at the 3rd commit;
    // failpoints (src/failpoint.rs) are compiled in debug builds only, and the binary under test
    // is built with this test's profile
    if cfg!(debug_assertions) {
        let crashed = dir.path().join("crashed");
        let o = actprm_env(
            &active_args(pool, s(&crashed), model),
            &[("ACTPRM_FAILPOINT", "active-commit:3")],
        );
        assert!(!o.status.success());
        let mut resume = active_args(pool, s(&crashed), model);
        resume.push("--resume");
        let o = actprm(&resume);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(active_decisions(&crashed), expected, "failpoint crash");
        assert_eq!(ids_in(&crashed.join("scored"), "part-"), scored);
    } else {
        eprintln!("SKIPPED item_09's failpoint crash: this build has no failpoints (a release build); the kill -9 part runs");
    }

    // kill -9 at random moments
    let killed = dir.path().join("killed");
    let mut rng = actprm::rng::NormalRng::new(9);
    let mut kills = 0;
    loop {
        let mut args = active_args(pool, s(&killed), model);
        if killed.join("loop-state.json").exists() {
            args.push("--resume");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(
            200 + (rng.next_unit() * 1200.0) as u64,
        ));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success());
                break;
            }
            None if kills < 4 => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                assert!(child.wait().unwrap().success());
                break;
            }
        }
    }
    assert!(kills >= 1, "never interrupted: make the pool larger");
    assert_eq!(
        active_decisions(&killed),
        expected,
        "after {kills} kills the decisions equal an uninterrupted run's"
    );
    assert_eq!(ids_in(&killed.join("scored"), "part-"), scored);
}

// ---- item 10: output folders -----------------------------------------------------------------

#[test]
fn item_10_a_used_score_folder_is_refused_or_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    // an earlier run wrote 3 parts
    let mut job = actprm::pipeline::ScoreJob::new(vec![s(&input).to_string()], out.clone());
    job.rows_per_part = 10;
    job.batch_rows = 10;
    actprm::pipeline::run_score(&job, Default::default()).unwrap();
    assert_eq!(read_parquet_dir(&out, "part-").len(), 3);
    let o = actprm(&["score", "-i", s(&input), "-o", s(&out)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("holds an earlier run's output"),
        "{}",
        stderr(&o)
    );
    let o = actprm(&["score", "-i", s(&input), "-o", s(&out), "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = actprm(&[
        "sql",
        "--table",
        &format!("t={}", out.display()),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM t",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert_eq!(
        String::from_utf8_lossy(&q.stdout),
        "n\n24\n",
        "no stale part is read"
    );
}

// ---- item 11: smaller holes ------------------------------------------------------------------

#[test]
fn item_11a_a_key_straddling_the_error_excerpt_is_not_leaked() {
    use actprm::label::judge::JudgeConfig;
    use actprm::pipeline::{run_label, LabelJob};
    use judge_server::{JudgeServer, Reply};
    const KEY: &str = "sk-straddle-0123456789abcdef";
    // the key starts 5 characters before the 300-character cut of the error excerpt
    let body = format!("{}{KEY} trailing", "x".repeat(295));
    let server = JudgeServer::start(Arc::new(move |_| Reply::Status {
        code: 400,
        body: body.clone(),
        retry_after: None,
    }));
    std::env::set_var("ACTPRM_TEST_STRADDLE_KEY", KEY);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    rows_parquet(&input, &[(Some("What is 2+2?"), vec!["4."])]);
    let config = JudgeConfig {
        url: server.url(),
        model: "m".into(),
        api_key_env: "ACTPRM_TEST_STRADDLE_KEY".into(),
        max_retries: 0,
        ..JudgeConfig::default()
    };
    let job = LabelJob::new(
        vec![s(&input).to_string()],
        dir.path().join("out"),
        config,
        actprm::report::Log::new(|_: &str| {}),
    );
    run_label(&job).unwrap();
    let b = &read_parquet_dir(&dir.path().join("out"), "part-")[0];
    let reason = b
        .column_by_name("judge_reason")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string();
    assert!(reason.contains("HTTP 400"), "{reason}");
    assert!(
        !reason.contains("sk-st"),
        "a prefix of the key leaked: {reason}"
    );
}

#[test]
fn item_11b_judge_credentials_in_urls_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let file = dir.path().join("judge.yaml");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/judge-active-learning.yaml"),
    )
    .unwrap()
    .replace(
        "${JUDGE_URL:-http://127.0.0.1:8089/v1}",
        "http://user:s3cr3t-token@127.0.0.1:1/v1",
    )
    .replace(
        "${INPUT:-tests/data/prm800k_phase1_test.parquet}",
        s(&input),
    )
    .replace(
        "${OUT:-out/judge-active-learning}",
        s(&dir.path().join("out")),
    );
    assert!(example.contains("s3cr3t-token"));
    std::fs::write(&file, example).unwrap();
    let o = actprm(&["validate", s(&file)]);
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(all.contains("does not answer"), "{all}");
    assert!(!all.contains("s3cr3t-token"), "{all}");
}

#[test]
fn item_11c_a_changed_backbone_is_refused_by_its_pinned_hash() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let o = actprm(&["init-model", "-o", s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest_path = model.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    // the graph a CPU run opens (built on first use), copied with one byte changed into a
    // folder the manifest's templated path now names; the build's pin stays in the manifest
    let loaded = actprm::model::LoadedModel::from_dir(&model).unwrap();
    let original = loaded
        .check_files(actprm::model::Device::Cpu)
        .expect("the default backbone builds");
    let mut bytes = std::fs::read(&original).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let copies = dir.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let name = original.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(copies.join(&name), &bytes).unwrap();
    let template = name.replace("int8-rows", "{precision}");
    assert!(template.contains("{precision}"), "{name}");
    manifest["backbone"] = serde_json::json!(copies.join(template).display().to_string());
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let input = prm800k_parquet(dir.path());
    let o = actprm(&[
        "score",
        "-i",
        s(&input),
        "-o",
        s(&dir.path().join("out")),
        "--model",
        s(&model),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("but the manifest pins"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn item_11d_labels_past_i32_are_errors_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("big.jsonl");
    std::fs::write(
        &jsonl,
        "{\"problem\": \"p\", \"steps\": [\"a\", \"b\"], \"label\": 4294967297}\n",
    )
    .unwrap();
    let e = actprm::source::jsonl::read_labelled(&jsonl).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    // a Parquet pool's Int64 label past i32 is no label at all (it was 1 after wrapping)
    let batch = RecordBatch::try_from_iter(vec![(
        "label",
        Arc::new(Int64Array::from(vec![4_294_967_297i64, 1])) as ArrayRef,
    )])
    .unwrap();
    let labels = actprm::label::first_error_labels(
        &batch,
        &actprm::label::LabelColumn::FirstError("label".into()),
        &[3, 3],
    )
    .unwrap();
    assert_eq!(labels, vec![None, Some(1)]);
}

#[test]
fn item_11e_a_foreign_arrow_file_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.arrow");
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1i64, 2]))],
    )
    .unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let o = actprm(&[
        "train",
        "--features",
        s(&path),
        "-o",
        s(&dir.path().join("m")),
    ]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(stderr(&o).contains("step_features"), "{}", stderr(&o));
    // the right column names with other types: still an error, not a panic
    let mut lists = ListBuilder::new(arrow::array::FixedSizeListBuilder::new(
        arrow::array::Float32Builder::new(),
        2,
    ));
    lists.values().values().append_slice(&[1.0, 2.0]);
    lists.values().append(true);
    lists.append(true);
    let batch = RecordBatch::try_from_iter(vec![
        (
            "source_file",
            Arc::new(Int64Array::from(vec![1i64])) as ArrayRef,
        ),
        (
            "source_row",
            Arc::new(Int64Array::from(vec![1i64])) as ArrayRef,
        ),
        ("label", Arc::new(Int64Array::from(vec![1i64])) as ArrayRef),
        ("step_features", Arc::new(lists.finish()) as ArrayRef),
    ])
    .unwrap();
    let path2 = dir.path().join("typed.arrow");
    let mut w = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(&path2).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let e = actprm::formats::features::read_features(&path2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("source_file"), "{e}");
}

#[test]
fn item_11f_convert_never_touches_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let neighbour = dir.path().join("out-00000.parquet");
    std::fs::write(&neighbour, b"the user's own file").unwrap();
    let output = dir.path().join("out.parquet");
    let o = actprm(&[
        "convert",
        s(&data("prm800k_test_sample.jsonl")),
        "-o",
        s(&output),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&neighbour).unwrap(), b"the user's own file");
    let rows: usize = read_parquet_dir(dir.path(), "out.parquet")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 24);
}

// ---- the directory watcher -------------------------------------------------------------------

#[test]
fn watch_model_swaps_in_heads_exported_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 30_000, 1, 1000);
    let watched = dir.path().join("watched");
    let loaded = actprm::model::LoadedModel::from_dir(&model).unwrap();
    loaded
        .write_dir(
            &watched,
            &loaded.heads_bytes,
            loaded.anchors_bytes.as_deref(),
            &[],
        )
        .unwrap();
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args([
            "score",
            "-i",
            s(&corpus),
            "-o",
            s(&out),
            "--model",
            s(&model),
            "--watch-model",
            s(&watched),
            "--batch-rows",
            "100",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // swap the heads once the first scored rows are on disk (the first part is being written),
    // so rows of the old version exist whatever the machine's load
    let started = std::time::Instant::now();
    let first_part_open = || {
        std::fs::read_dir(&out).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("part-00000"))
        })
    };
    while !first_part_open() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no scored rows within two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fresh = actprm::model::HeadsWeights::init(loaded.manifest.ensemble_size, 32, 99);
    let bytes = fresh.to_onnx(&[]);
    loaded
        .write_dir(&watched, &bytes, Some(&bytes), &[])
        .unwrap();
    let new_version = actprm::model::LoadedModel::from_dir(&watched)
        .unwrap()
        .version();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut versions = BTreeSet::new();
    for b in read_parquet_dir(&out, "part-") {
        let v = b
            .column_by_name("model_version")
            .unwrap()
            .as_string::<i32>();
        versions.extend(v.iter().map(|x| x.unwrap().to_string()));
    }
    assert!(
        versions.contains(&loaded.version()) && versions.contains(&new_version),
        "rows of both versions: {versions:?} (new {new_version})"
    );
}

// ---- issue 29 (reliability 3): never delete, mix or trust what actprm did not write ---------

/// A folder a user keeps their own things in.
fn users_folder(dir: &Path) {
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("results.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(dir.join("notes/day1.md"), "mine").unwrap();
}

fn users_files_intact(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("results.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes/day1.md")).unwrap(),
        "mine"
    );
}

#[test]
fn r3_01_model_commands_never_delete_files_they_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        vec!["tiny-model", "--dim", "8", "--heads", "2"],
        vec!["init-model", "--heads", "2"],
    ] {
        let out = dir.path().join(command[0]);
        users_folder(&out);
        let mut args = command.clone();
        args.extend(["-o", s(&out)]);
        let o = actprm(&args);
        assert!(
            !o.status.success(),
            "{}: a user's folder was taken",
            command[0]
        );
        assert!(
            stderr(&o).contains("not a model directory actprm wrote")
                && stderr(&o).contains("--overwrite"),
            "{}",
            stderr(&o)
        );
        users_files_intact(&out);
        args.push("--overwrite");
        let o = actprm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        users_files_intact(&out);
        assert!(out.join("manifest.json").is_file());
        // now a model directory actprm wrote: replaced again without --overwrite, the user's
        // files still kept, and the model loads
        let o = actprm(&args[..args.len() - 1]);
        assert!(o.status.success(), "{}", stderr(&o));
        users_files_intact(&out);
        let model = actprm::model::LoadedModel::from_dir(&out).unwrap();
        assert_eq!(model.manifest.ensemble_size, 2);
    }
}

#[test]
fn r3_02_a_fresh_active_run_never_deletes_another_runs_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let pool = corpus(dir.path(), 120, 1, 60);
    let work = dir.path().join("work");
    // the realistic path: score the pool into work/scored, then start the loop in work
    let o = actprm(&[
        "score",
        "-i",
        s(&pool),
        "-o",
        s(&work.join("scored")),
        "--model",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = ids_in(&work.join("scored"), "part-");
    assert_eq!(scored.len(), 120);
    std::fs::create_dir_all(work.join("decisions")).unwrap();
    std::fs::write(work.join("decisions/why.txt"), "mine").unwrap();
    let args = active_args(s(&pool), s(&work), s(&model));
    let o = actprm(&args);
    assert!(
        !o.status.success(),
        "the loop took a folder holding score's parts"
    );
    assert!(
        stderr(&o).contains("holds an earlier run's output") && stderr(&o).contains("--overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids_in(&work.join("scored"), "part-"), scored);
    assert!(
        work.join("scored/summary.json").is_file(),
        "score's summary stays"
    );
    // --overwrite removes the loop's own names only: the user's file stays
    let mut again = args.clone();
    again.push("--overwrite");
    let o = actprm(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ids_in(&work.join("scored"), "part-").len(), 120);
    assert_eq!(
        std::fs::read_to_string(work.join("decisions/why.txt")).unwrap(),
        "mine"
    );
    // a finished run is not started again over itself without --overwrite or --resume
    let o = actprm(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("holds a previous run"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn r3_03_active_resume_refuses_other_inputs_or_settings() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let pool = corpus(dir.path(), 160, 2, 40);
    let (model, pool_s) = (s(&model), s(&pool));
    let out = dir.path().join("run");
    let mut first = active_args(pool_s, s(&out), model);
    first.extend(["--stop-after-rows", "40"]);
    let o = actprm(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("loop-state.json").is_file());
    let resume = |extra: &[&str], change: &str| {
        let mut args = active_args(pool_s, s(&out), model);
        args.push("--resume");
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) => args[i + 1] = pair[1],
                None => args.extend(pair),
            }
        }
        let o = actprm(&args);
        assert!(!o.status.success(), "a resume with {change} went through");
        assert!(
            stderr(&o).contains("settings") && stderr(&o).contains(change),
            "resume with {change}: {}",
            stderr(&o)
        );
    };
    // settings that change decisions, each named as the user writes it
    resume(&["--keep-rate", "0.5"], "--keep-rate: 0.3 -> 0.5");
    resume(&["--batch-rows", "20"], "--batch-rows: 40 -> 20");
    resume(&["--seed", "7"], "--seed: 0 -> 7");
    // another model
    let other = dir.path().join("other");
    let o = actprm(&["tiny-model", "-o", s(&other), "--dim", "16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut args = active_args(pool_s, s(&out), s(&other));
    args.push("--resume");
    let o = actprm(&args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model: "), "{}", stderr(&o));
    // a file joined the pool
    let extra = pool.join("late.parquet");
    std::fs::copy(
        std::fs::read_dir(&pool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap(),
        &extra,
    )
    .unwrap();
    resume(&[], "added late.parquet");
    std::fs::remove_file(&extra).unwrap();
    // the same inputs and settings resume
    let mut args = active_args(pool_s, s(&out), model);
    args.push("--resume");
    let o = actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(active_decisions(&out).len(), 160);
}

#[test]
fn r3_07_identical_files_under_two_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = prm800k_parquet(dir.path());
    for root in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(root)).unwrap();
        std::fs::copy(&input, dir.path().join(root).join("x.parquet")).unwrap();
    }
    let out = dir.path().join("out");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let o = actprm(&[
        "filter",
        "-i",
        s(&a),
        s(&b),
        "-o",
        s(&out),
        "--model",
        s(&model),
    ]);
    assert!(
        !o.status.success(),
        "two copies shared unit ids: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("same name under its input root"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn r3_09_filter_resume_refuses_another_split() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = prm800k_parquet(dir.path());
    let data = dir.path().join("hub/data");
    std::fs::create_dir_all(&data).unwrap();
    for split in ["train", "test"] {
        std::fs::copy(&input, data.join(format!("{split}-00000-of-00001.parquet"))).unwrap();
    }
    let out = dir.path().join("out");
    let hub = dir.path().join("hub");
    let run = |split: &str| {
        actprm(&[
            "filter",
            "-i",
            s(&hub),
            "-o",
            s(&out),
            "--model",
            s(&model),
            "--split",
            split,
        ])
    };
    let o = run("train");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run("test");
    assert!(
        !o.status.success(),
        "a second split went into the first one's folder"
    );
    assert!(
        stderr(&o).contains("split: train -> test"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn r3_12_one_process_writes_an_output_folder_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // another actprm holds the folder (the lock is the same advisory lock a run takes)
    let held = std::fs::File::create(out.join(".lock")).unwrap();
    held.try_lock().unwrap();
    for command in ["score", "active"] {
        let o = actprm(&[command, "-i", s(&input), "-o", s(&out)]);
        assert!(!o.status.success(), "{command} wrote a locked folder");
        assert!(
            stderr(&o).contains("another actprm process is writing this folder"),
            "{command}: {}",
            stderr(&o)
        );
    }
    assert!(read_parquet_dir(&out, "part-").is_empty());
    drop(held);
}

#[test]
fn r3_13_a_pipeline_never_writes_over_its_own_source() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = prm800k_parquet(dir.path());
    let folder = dir.path().join("data");
    std::fs::create_dir_all(&folder).unwrap();
    // the source folder holds parts named as a score run names them
    std::fs::copy(&input, folder.join("part-00000.parquet")).unwrap();
    let before = std::fs::read(folder.join("part-00000.parquet")).unwrap();
    let yaml = format!(
        "models:\n  tiny:\n    path: {}\nsources:\n  pool:\n    type: parquet\n    paths: [{}]\n\
         transforms:\n  scored:\n    type: score\n    inputs: [pool]\n    model: tiny\n\
         sinks:\n  out:\n    type: parquet\n    inputs: [scored]\n    path: {}\n",
        s(&model),
        s(&folder),
        s(&folder)
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(!o.status.success(), "the pipeline wrote over its source");
    assert!(
        stderr(&o).contains("is an input of this run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(folder.join("part-00000.parquet")).unwrap(),
        before
    );
}

#[test]
fn r3_06_a_pipeline_sql_result_is_not_reused_when_its_inputs_changed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = prm800k_parquet(dir.path());
    let rows = read_parquet_dir(dir.path(), "prm800k_sample")
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    let pool = dir.path().join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    std::fs::copy(&input, pool.join("a.parquet")).unwrap();
    let out = dir.path().join("out");
    let yaml = format!(
        "models:\n  tiny:\n    path: {}\nsources:\n  pool:\n    type: parquet\n    paths: [{}]\n\
         transforms:\n  pick:\n    type: sql\n    inputs: [pool]\n    query: SELECT id, problem, steps FROM input\n\
         \x20 scored:\n    type: score\n    inputs: [pick]\n    model: tiny\n\
         sinks:\n  out:\n    type: parquet\n    inputs: [scored]\n    path: {}\n",
        s(&model),
        s(&pool),
        s(&out)
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let scored = || {
        read_parquet_dir(&out, "part-")
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
    };
    let o = actprm(&["run", s(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(scored(), rows);
    // a second file joins the source: the rerun must see it
    std::fs::copy(&input, pool.join("b.parquet")).unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        scored(),
        2 * rows,
        "the sql result of the earlier run was reused"
    );
}
