//! Issue 31, item 5: outputs loaders open. `datasets.load_dataset(OUT)` (Hugging Face `datasets`,
//! the real package, pinned in tests/python/requirements.txt) and `actprm sql --table t=OUT` read
//! exactly the data rows of a score, filter and active output: not the run records, not the
//! rejects, one `train` split even when the part names hold "test". A user's own `README.md` in
//! the folder is never replaced.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use actprm::source::jsonl::to_record_batch;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn python() -> PathBuf {
    let python = actprm::model::deps_dir().join("datasets/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `ACTPRM_RAY=1 ./setup.sh` (it installs the pinned datasets)",
        python.display()
    );
    python
}

/// `load_dataset(folder[, config])` as `{"splits": {name: rows}, "columns": [...]}`.
fn load_dataset(folder: &Path, config: Option<&str>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/load_outputs.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(folder).env("HF_DATASETS_OFFLINE", "1");
    // a cache of its own: nothing from other runs
    cmd.env("HF_HOME", folder.parent().unwrap().join("hf-home"));
    if let Some(c) = config {
        cmd.arg(c);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "load_dataset({}): {}",
        folder.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Rows in the Parquet files of `dir` whose names start with `prefix`.
fn rows(dir: &Path, prefix: &str) -> u64 {
    read_parquet_dir(dir, prefix)
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum()
}

/// `SELECT count(*)` of `sql --table t=folder`.
fn sql_count(folder: &Path) -> u64 {
    let rows = sql_rows(folder, "SELECT count(*) AS n FROM t");
    rows[0]["n"].as_u64().unwrap()
}

/// The PRM800K sample as `corpus_test.parquet` (a name holding "test"), one row with no steps
/// (a reject).
fn corpus(dir: &Path) -> PathBuf {
    let mut records = records("prm800k_test_sample.jsonl");
    records[3].steps.clear();
    let path = dir.join("corpus_test.parquet");
    write_parquet(&path, &to_record_batch(&records));
    path
}

#[test]
fn load_dataset_and_sql_read_exactly_the_data_rows_of_each_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());

    // score: 23 scored rows in part-*, 1 reject beside them, summary.json
    let scored = dir.path().join("scored");
    let o = actprm(&["score", "-q", "-i", s(&input), "-o", s(&scored)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&scored.join("rejects"), "rejects-"), 1);
    let data_rows = rows(&scored, "part-");
    assert_eq!(data_rows, 23);
    let got = load_dataset(&scored, None);
    assert_eq!(
        got["splits"],
        serde_json::json!({"train": data_rows}),
        "{got}"
    );
    assert!(got["columns"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("step_mean")));
    assert_eq!(sql_count(&scored), data_rows);

    // filter: kept/ and skipped/ beside units/, run.json, summary.json
    let filtered = dir.path().join("filtered");
    let o = actprm(&[
        "filter",
        "-q",
        "-i",
        s(&input),
        "-o",
        s(&filtered),
        "--keep-rate",
        "0.5",
        "--write-skipped",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let kept = rows(&filtered.join("kept"), "");
    let skipped = rows(&filtered.join("skipped"), "");
    assert!(kept > 0 && skipped > 0, "kept {kept}, skipped {skipped}");
    let got = load_dataset(&filtered, None);
    assert_eq!(got["splits"], serde_json::json!({"train": kept}), "{got}");
    let got = load_dataset(&filtered, Some("skipped"));
    assert_eq!(
        got["splits"],
        serde_json::json!({"train": skipped}),
        "{got}"
    );
    assert_eq!(sql_count(&filtered), kept);

    // active: scored/ and decisions/ beside loop-state.json, checkpoints/, model/
    let active = dir.path().join("active");
    let o = actprm(&[
        "active",
        "-q",
        "-i",
        s(&input),
        "-o",
        s(&active),
        "--keep-rate",
        "0.5",
        "--batch-rows",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let streamed = rows(&active.join("scored"), "part-");
    let decided = rows(&active.join("decisions"), "decisions-");
    assert!(streamed > 0 && decided > 0);
    let got = load_dataset(&active, None);
    assert_eq!(
        got["splits"],
        serde_json::json!({"train": streamed}),
        "{got}"
    );
    let got = load_dataset(&active, Some("decisions"));
    assert_eq!(
        got["splits"],
        serde_json::json!({"train": decided}),
        "{got}"
    );
    assert_eq!(sql_count(&active), streamed);
}

#[test]
fn a_users_readme_stays_and_the_run_says_why_it_wrote_no_card() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("README.md"), "# my corpus notes\n").unwrap();
    let o = actprm(&["score", "-q", "-i", s(&input), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("README.md")).unwrap(),
        "# my corpus notes\n"
    );
    assert!(stderr(&o).contains("no dataset card"), "{}", stderr(&o));
    // and a second run into a folder holding actprm's own card rewrites it
    let ours = dir.path().join("ours");
    for _ in 0..2 {
        let o = actprm(&[
            "score",
            "-q",
            "--overwrite",
            "-i",
            s(&input),
            "-o",
            s(&ours),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let card = std::fs::read_to_string(ours.join("README.md")).unwrap();
    assert!(card.starts_with("---\nconfigs:\n"), "{card}");
}

/// `sql` reads JSON Lines by `--table` and by name in FROM, every field kept (lists as lists).
#[test]
fn sql_reads_json_lines_with_every_field() {
    let file = data("prm800k_ratings_shapes.jsonl");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // the independent count: ratings of -1 over every record, read by serde_json
    let negative: usize = lines
        .iter()
        .map(|r| {
            r["ratings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v.as_i64() == Some(-1))
                .count()
        })
        .sum();
    let query =
        "SELECT count(*) AS n, sum(array_length(array_positions(ratings, -1))) AS negative, \
                 sum(CASE WHEN final_answer_correct THEN 1 ELSE 0 END) AS solved FROM t";
    let solved = lines
        .iter()
        .filter(|r| r["final_answer_correct"] == serde_json::json!(true))
        .count();
    for args in [
        vec![
            "sql".to_string(),
            "--table".into(),
            format!("t={}", s(&file)),
            "--format".into(),
            "json".into(),
            query.into(),
        ],
        vec![
            "sql".to_string(),
            "--format".into(),
            "json".into(),
            query.replace("FROM t", &format!("FROM '{}'", s(&file))),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = actprm(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim().lines().next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["n"], lines.len(), "{v}");
        assert_eq!(v["negative"], negative, "{v}");
        assert_eq!(v["solved"], solved, "{v}");
    }
}

/// `(id, step_mean)` rows as `load_dataset` gave them.
fn loaded_rows(got: &serde_json::Value) -> Vec<(String, Vec<f32>)> {
    got["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let means = r[1].as_array().unwrap();
            (
                r[0].as_str().unwrap().to_string(),
                means.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
            )
        })
        .collect()
}

/// The same rows, in the same order, with the same step scores (to f32 precision).
fn assert_same_rows(what: &str, got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)]) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{what}: row order");
        assert_eq!(g.1.len(), w.1.len(), "{what}: steps of {}", w.0);
        for (a, b) in g.1.iter().zip(&w.1) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{what}: {} {a} vs {b}",
                w.0
            );
        }
    }
}

/// Issue 30, item 2: `--format jsonl | arrow_ipc | hf_dataset` store the very rows of the
/// Parquet output, in a folder `load_dataset` and `sql --table` open (the Hub's layout:
/// `data/train-0000i-of-0000n.parquet`); a filter resumes in each format by its units.
#[test]
fn every_format_holds_the_parquet_outputs_rows_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    // `command --format format` into `<command>-<folder>`, and its output
    let attempt = |command: &str, format: &str, folder: &str| {
        let out = dir.path().join(format!("{command}-{folder}"));
        let mut args = vec![
            command,
            "-q",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--format",
            format,
        ];
        if command == "filter" {
            args.extend(["--keep-rate", "0.5", "--write-skipped"]);
        }
        (actprm(&args), out)
    };
    let run = |command: &str, format: &str| {
        let (o, out) = attempt(command, format, format);
        assert!(
            o.status.success(),
            "{command} --format {format}: {}",
            stderr(&o)
        );
        out
    };
    let scored = step_means_in(&run("score", "parquet"));
    let filtered = run("filter", "parquet");
    let kept = step_means_of(&filtered.join("kept"), "");
    let skipped = step_means_of(&filtered.join("skipped"), "");
    assert_eq!(scored.len(), 23);
    assert!(!kept.is_empty() && !skipped.is_empty());
    for format in ["jsonl", "arrow_ipc", "hf_dataset"] {
        let out = run("score", format);
        let got = load_dataset(&out, None);
        assert_eq!(
            got["splits"],
            serde_json::json!({"train": 23}),
            "{format}: {got}"
        );
        assert_same_rows(
            &format!("score --format {format}"),
            &loaded_rows(&got),
            &scored,
        );
        assert_eq!(sql_count(&out), 23, "sql over score --format {format}");

        let out = run("filter", format);
        let got = load_dataset(&out, None);
        assert_same_rows(
            &format!("filter --format {format}"),
            &loaded_rows(&got),
            &kept,
        );
        let got = load_dataset(&out, Some("skipped"));
        assert_same_rows(
            &format!("filter --format {format} skipped"),
            &loaded_rows(&got),
            &skipped,
        );
        assert_eq!(
            sql_count(&out),
            kept.len() as u64,
            "sql over filter --format {format}"
        );
    }
    let hub = dir.path().join("score-hf_dataset");
    assert!(hub.join("data/train-00000-of-00001.parquet").is_file());
    assert!(!hub.join("part-00000.parquet").exists());

    // a committed JSON Lines unit that lost a line is found and redone, not trusted
    let out = dir.path().join("filter-jsonl");
    let unit = std::fs::read_dir(out.join("kept"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&unit).unwrap();
    let shorter: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&unit, shorter.join("\n") + "\n").unwrap();
    let (o, _) = attempt("filter", "jsonl", "jsonl");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("redoing the unit"), "{}", stderr(&o));
    assert_same_rows(
        "resumed jsonl",
        &loaded_rows(&load_dataset(&out, None)),
        &kept,
    );

    // another format for an earlier run's folder is refused by name
    let (o, _) = attempt("filter", "parquet", "jsonl");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--format: jsonl -> parquet"),
        "{}",
        stderr(&o)
    );
}

/// A pipeline file whose source `corpus` is `input`, read by a score stage `scored`, then
/// `stages` (its further `transforms` lines) and `sinks` (the `sinks` section's lines).
fn pipeline_yaml(input: &Path, stages: &str, sinks: &str) -> String {
    format!(
        "sources:\n  corpus: {{type: parquet, paths: [{}]}}\ntransforms:\n  \
         scored: {{type: score, inputs: [corpus]}}\n{stages}sinks:\n{sinks}",
        s(input)
    )
}

/// Runs a pipeline file over the test corpus in `dir`: `stages` is its `transforms` section
/// (a score stage `scored` reads source `corpus`), `sinks` maps each sink name to its type and
/// folder name under `dir`, all reading `last`. Returns the file's path.
fn run_pipeline(dir: &Path, stages: &str, last: &str, sinks: &[(&str, &str, &str)]) -> PathBuf {
    let input = corpus(dir);
    let sinks: String = sinks
        .iter()
        .map(|(name, kind, folder)| {
            format!(
                "  {name}: {{type: {kind}, inputs: [{last}], path: {}}}\n",
                s(&dir.join(folder))
            )
        })
        .collect();
    let yaml = pipeline_yaml(&input, stages, &sinks);
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    file
}

/// Issue 30's pipeline: parquet source -> score -> filter (keep_rate) -> parquet + jsonl +
/// hf_dataset sinks, in one stream; the jsonl and hf_dataset folders hold exactly the parquet
/// sink's rows, and `sql --pipeline` names every sink's table.
#[test]
fn one_filter_stream_writes_three_data_sinks_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let file = run_pipeline(
        dir.path(),
        "  uncertain: {type: filter, inputs: [scored], keep_rate: 0.5, write_skipped: true}\n",
        "uncertain",
        &[
            ("kept", "parquet", "kept"),
            ("kept_lines", "jsonl", "lines"),
            ("hub", "hf_dataset", "hub"),
        ],
    );
    let kept = step_means_of(&out("kept").join("kept"), "");
    let skipped = step_means_of(&out("kept").join("skipped"), "");
    assert!(!kept.is_empty() && !skipped.is_empty());
    for sink in ["lines", "hub"] {
        assert_same_rows(sink, &loaded_rows(&load_dataset(&out(sink), None)), &kept);
        let got = load_dataset(&out(sink), Some("skipped"));
        assert_same_rows(&format!("{sink} skipped"), &loaded_rows(&got), &skipped);
    }
    let records: Vec<serde_json::Value> = std::fs::read_dir(out("kept").join("units"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let listed: Vec<String> = records
        .iter()
        .flat_map(|r| {
            r["outputs"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    for folder in ["lines/kept/", "hub/data/train-", "hub/data/skipped-"] {
        assert!(
            listed.iter().any(|f| f.contains(folder)),
            "{folder} in {listed:?}"
        );
    }
    let o = actprm(&[
        "sql",
        "--pipeline",
        s(&file),
        "--format",
        "csv",
        "SELECT (SELECT count(*) FROM kept) k, (SELECT count(*) FROM kept_lines) l, \
         (SELECT count(*) FROM hub) h, (SELECT count(*) FROM hub_skipped) hs",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (k, n) = (kept.len(), skipped.len());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap(),
        format!("{k},{k},{k},{n}")
    );
    // a sink added to a run with committed units would miss them: refused, not half-written
    let more = std::fs::read_to_string(&file).unwrap()
        + &format!(
            "  late: {{type: jsonl, inputs: [uncertain], path: {}}}\n",
            s(&out("late"))
        );
    std::fs::write(&file, more).unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("new to a filter run"), "{}", stderr(&o));
}

/// A score stage's rows go to every data sink of its pipeline in one stream: Parquet, Arrow IPC
/// and the Hub's layout hold the same rows; the rejects stay in the first sink's folder.
#[test]
fn one_score_stream_writes_each_data_sink() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    run_pipeline(
        dir.path(),
        "",
        "scored",
        &[
            ("parts", "parquet", "parts"),
            ("ipc", "arrow_ipc", "ipc"),
            ("hub", "hf_dataset", "hub"),
        ],
    );
    let scored = step_means_in(&out("parts"));
    assert_eq!(scored.len(), 23);
    assert_eq!(rows(&out("parts").join("rejects"), "rejects-"), 1);
    for sink in ["ipc", "hub"] {
        assert_same_rows(sink, &loaded_rows(&load_dataset(&out(sink), None)), &scored);
        assert!(
            !out(sink).join("rejects").exists(),
            "{sink}: rejects are the first sink's"
        );
    }
    assert!(out("ipc").join("part-00000.arrow").is_file());
}

/// Issue 30, item 2, for the loop: `active --format jsonl | arrow_ipc` stores the scored rows of
/// the Parquet run (same rows, same scores) in a folder `load_dataset` opens; a resume in another
/// format is refused by name, and `hf_dataset` (named by a count known only at the end) is
/// refused before any work.
#[test]
fn the_active_loop_stores_its_scored_rows_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    // `active --format FORMAT` into `active-FOLDER`
    let active_in = |folder: &str, format: &str, extra: &[&str]| {
        let out = dir.path().join(format!("active-{folder}"));
        let mut args = vec![
            "active",
            "-q",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--keep-rate",
            "0.5",
            "--batch-rows",
            "8",
            "--format",
            format,
        ];
        args.extend(extra);
        (actprm(&args), out)
    };
    let active = |format: &str, extra: &[&str]| active_in(format, format, extra);
    let (o, parquet) = active("parquet", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = step_means_of(&parquet.join("scored"), "part-");
    assert_eq!(want.len(), 23);
    for (format, extension) in [("jsonl", "jsonl"), ("arrow_ipc", "arrow")] {
        let (o, out) = active(format, &[]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let parts: Vec<String> = std::fs::read_dir(out.join("scored"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !parts.is_empty() && parts.iter().all(|p| p.ends_with(&format!(".{extension}"))),
            "{format}: {parts:?}"
        );
        let got = load_dataset(&out, None);
        assert_same_rows(
            &format!("active --format {format}"),
            &loaded_rows(&got),
            &want,
        );
    }
    let (o, _) = active("parquet", &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the jsonl run's folder, resumed as Parquet
    let (resumed_elsewhere, _) = active_in("jsonl", "parquet", &["--resume"]);
    assert!(!resumed_elsewhere.status.success());
    assert!(
        stderr(&resumed_elsewhere).contains("--format"),
        "{}",
        stderr(&resumed_elsewhere)
    );
    let (o, out) = active("hf_dataset", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("hf_dataset is not available for the active loop"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// `SELECT` rows of `sql --table t=FOLDER QUERY` as JSON objects.
fn sql_rows(folder: &Path, query: &str) -> Vec<serde_json::Value> {
    let o = actprm(&[
        "sql",
        "--table",
        &format!("t={}", s(folder)),
        "--format",
        "json",
        query,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Issue 30, item 1 (and 31's "an sql transform after score is refused"): source -> score
/// [-> filter] -> sql -> sinks runs in one stream, the query mapping each scored batch on its way to every data
/// sink. Its rows are those of the same query run by `actprm sql` over the whole scored output
/// afterwards; a query that needs every row at once (ORDER BY) is refused by name before any
/// work. After filter it maps the kept rows (a resume with another query is refused), and nothing
/// but sinks may follow it.
#[test]
fn an_sql_transform_after_score_maps_the_rows_to_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let query = "SELECT id, prm_list_min(step_mean) AS reward, first_error FROM input \
                 WHERE prm_list_min(step_mean) > 0.8";
    run_pipeline(
        dir.path(),
        &format!("  good: {{type: sql, inputs: [scored], query: \"{query}\"}}\n"),
        "good",
        &[("rows", "parquet", "rows"), ("lines", "jsonl", "lines")],
    );
    // the reference: the whole scored output, then the query over it
    let input = corpus(dir.path());
    let scored = out("scored");
    let o = actprm(&["score", "-q", "-i", s(&input), "-o", s(&scored)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let order = "SELECT id, reward, first_error FROM t ORDER BY id";
    let want = sql_rows(
        &scored,
        &format!("{} ORDER BY id", query.replace("input", "t")),
    );
    assert!(!want.is_empty() && want.len() < 23, "{} rows", want.len());
    for sink in ["rows", "lines"] {
        assert_eq!(sql_rows(&out(sink), order), want, "{sink}");
    }
    let summary = summary(&out("rows"));
    assert_eq!(summary["rows_scored"], 23);
    assert_eq!(summary["rows_written"], want.len() as u64);

    // a query over every row at once cannot run batch by batch
    let file = dir.path().join("sorted.yaml");
    let text = std::fs::read_to_string(dir.path().join("p.yaml"))
        .unwrap()
        .replace("WHERE prm_list_min(step_mean) > 0.8", "ORDER BY id")
        .replace(s(&out("rows")), s(&out("sorted")))
        .replace(s(&out("lines")), s(&out("sorted-lines")));
    std::fs::write(&file, text).unwrap();
    let o = actprm(&["run", s(&file)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("sorts (ORDER BY)"), "{}", stderr(&o));
    // found by the checks before any work, at the query's line, as a column the rows lack is
    assert!(stderr(&o).contains(":5:"), "{}", stderr(&o));
    assert!(!out("sorted").exists());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("ORDER BY id", "WHERE nope > 1");
    std::fs::write(&file, text).unwrap();
    let o = actprm(&["validate", s(&file)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(":5:") && stderr(&o).contains("nope"),
        "{}",
        stderr(&o)
    );

    // after filter it maps the kept rows; a resume with another query is refused by name
    let pipeline = |query: &str| {
        let file = dir.path().join("after-filter.yaml");
        let stages = format!(
            "  kept: {{type: filter, inputs: [scored], keep_rate: 0.5}}\n  \
             good: {{type: sql, inputs: [kept], query: \"{query}\"}}\n"
        );
        let sinks = format!(
            "  rows: {{type: parquet, inputs: [good], path: {}}}\n",
            s(&out("kept-good"))
        );
        std::fs::write(&file, pipeline_yaml(&input, &stages, &sinks)).unwrap();
        actprm(&["run", "-q", s(&file)])
    };
    let query = "SELECT id, first_error, uncertainty FROM input WHERE first_error = -1";
    let o = pipeline(query);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = out("kept-reference");
    let o = actprm(&[
        "filter",
        "-q",
        "-i",
        s(&input),
        "-o",
        s(&reference),
        "--keep-rate",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = sql_rows(
        &reference,
        "SELECT id, first_error, uncertainty FROM t WHERE first_error = -1 ORDER BY id",
    );
    let got = sql_rows(
        &out("kept-good"),
        "SELECT id, first_error, uncertainty FROM t ORDER BY id",
    );
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let o = pipeline("SELECT id FROM input");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("(sql: SELECT id, first_error"),
        "{}",
        stderr(&o)
    );

    // nothing but sinks follows it
    let file = dir.path().join("after-sql.yaml");
    let stages = "  good: {type: sql, inputs: [scored], query: \"SELECT * FROM input\"}\n  \
                  kept: {type: filter, inputs: [good]}\n";
    let sinks = "  rows: {type: parquet, inputs: [kept], path: x}\n";
    std::fs::write(&file, pipeline_yaml(&input, stages, sinks)).unwrap();
    let o = actprm(&["validate", "--skip-env", s(&file)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(":6:") && stderr(&o).contains("cannot follow `good` (sql)"),
        "{}",
        stderr(&o)
    );
}
