//! Pipeline files: the shipped examples validate and run, the schema in `schemas/` is current,
//! and every class of mistake gives a located message (compared exactly, caret and all).
//! Regenerate the schema after a deliberate change with
//! `ACTPRM_UPDATE_SCHEMAS=1 cargo test --test integration schema`.

use crate::common;
use crate::judge_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary from the repository root, with only the given pipeline variables set.
fn actprm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actprm"));
    cmd.current_dir(root()).args(args);
    for var in [
        "INPUT",
        "CORPUS",
        "POOL",
        "OUT",
        "DEVICE",
        "LABEL_BUDGET",
        "JUDGE_URL",
        "JUDGE_MODEL",
        "MISSING_OUT",
        "MAX_STEPS",
        "KEEP_RATE",
        "MAX_REQUESTS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("actprm runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `yaml` to a temporary file, validates it, and returns stderr with the file's path
/// replaced by `FILE` (and the exit status, which must be non-zero).
fn problems(yaml: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = actprm(&["validate", path.to_str().unwrap()], env);
    let stderr = text(&out.stderr).replace(path.to_str().unwrap(), "FILE");
    assert!(
        !out.status.success(),
        "expected problems, got success: {stderr}"
    );
    stderr
}

const GOOD: &str = "\
sources:
  pool:
    type: parquet
    paths: [tests/data/prm800k_phase1_test.parquet]
transforms:
  scored:
    type: score
    inputs: [pool]
sinks:
  summary:
    type: table
    inputs: [scored]
";

#[test]
fn a_good_file_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let out = actprm(&["validate", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}: ok (score job)\n", path.display())
    );
}

#[test]
fn schema_is_current() {
    let path = root().join("schemas/pipeline.schema.json");
    let generated =
        serde_json::to_string_pretty(&actprm::pipeline::config::schema()).unwrap() + "\n";
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    // update mode rewrites a stale file and still fails, so it never passes by comparing the
    // file with itself
    if std::env::var_os("ACTPRM_UPDATE_SCHEMAS").is_some() && on_disk != generated {
        std::fs::write(&path, &generated).unwrap();
        panic!(
            "{} was stale and has been rewritten: review the diff, then rerun without ACTPRM_UPDATE_SCHEMAS",
            path.display()
        );
    }
    assert_eq!(
        on_disk,
        generated,
        "{} is stale: rerun with ACTPRM_UPDATE_SCHEMAS=1",
        path.display()
    );
    // `actprm schema` prints the same document
    let out = actprm(&["schema"], &[]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), generated);
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_example_validates() {
    let files = examples();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        // the judge's endpoint is not running in CI: its environment check is skipped
        let args: Vec<&str> = if rel.contains("judge") {
            vec!["validate", "--skip-env", &rel]
        } else {
            vec!["validate", &rel]
        };
        let out = actprm(&args, &[]);
        assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
    }
}

#[test]
fn quickstart_runs_and_prints_a_summary() {
    // the shipped 353-row default takes minutes on a small CPU: run it on the 24-row sample
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out = actprm(
        &["run", "pipelines/quickstart.yaml"],
        &[("INPUT", input.to_str().unwrap())],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("rows in        {:>10}", 24)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("rows scored    {:>10}", 24)),
        "{stdout}"
    );
}

#[test]
fn filter_corpus_runs_and_writes_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("kept");
    let out = actprm(
        &["run", "pipelines/filter-corpus.yaml"],
        &[
            ("CORPUS", corpus.to_str().unwrap()),
            ("OUT", out_dir.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("rows in        {:>10}", 24)),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["rows_in"], 24);
    let kept = summary["rows_kept"].as_u64().unwrap();
    let rows: usize = common::read_parquet_dir(&out_dir.join("kept"), "")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows as u64, kept);
}

#[test]
fn pool_active_learning_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pool = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("active");
    let out = actprm(
        &["run", "pipelines/pool-active-learning.yaml"],
        &[
            ("POOL", pool.to_str().unwrap()),
            ("OUT", out_dir.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("rows scored    {:>10}", 24)),
        "{}",
        text(&out.stdout)
    );
    assert!(out_dir.join("model/manifest.json").is_file());
}

#[test]
fn sql_stage_chooses_the_rows_the_scorer_sees() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("short");
    let env = [
        ("INPUT", input.to_str().unwrap()),
        ("OUT", out_dir.to_str().unwrap()),
        ("MAX_STEPS", "4"),
    ];
    let out = actprm(&["run", "pipelines/sql-score.yaml"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // the rows the query keeps, counted here from the input itself
    let records = common::records("prm800k_test_sample.jsonl");
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.steps.len() <= 4)
        .map(|r| r.id.clone().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert!(!ids.is_empty() && ids.len() < records.len());
    let summary = common::summary(&out_dir);
    assert_eq!(summary["rows_in"], ids.len() as u64, "{summary}");
    let mut scored: Vec<String> = common::read_parquet_dir(&out_dir, "part-")
        .iter()
        .flat_map(|b| {
            // the query may hand strings on as Utf8View: compare as plain strings
            let id = b.column_by_name("id").unwrap();
            let id = arrow::compute::cast(id, &arrow::datatypes::DataType::Utf8).unwrap();
            let id = arrow::array::AsArray::as_string::<i32>(&id);
            id.iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    scored.sort();
    assert_eq!(scored, ids);

    // a second run reuses the finished query result (same file, same rows)
    let before = std::fs::metadata(out_dir.join("sql/short.parquet"))
        .and_then(|m| m.modified())
        .unwrap();
    let again = actprm(&["run", "pipelines/sql-score.yaml"], &env);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let after = std::fs::metadata(out_dir.join("sql/short.parquet"))
        .and_then(|m| m.modified())
        .unwrap();
    assert_eq!(before, after);

    // `actprm sql --pipeline` finds the run's output under the sink's name
    let query = actprm(
        &[
            "sql",
            "--pipeline",
            "pipelines/sql-score.yaml",
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM parts",
        ],
        &env,
    );
    assert!(query.status.success(), "{}", text(&query.stderr));
    assert_eq!(text(&query.stdout), format!("n,ids\n{0},{0}\n", ids.len()));

    // --output appears whole or not at all
    let csv = dir.path().join("count.csv");
    let sql_to_file = |query: &str| {
        actprm(
            &[
                "sql",
                "--pipeline",
                "pipelines/sql-score.yaml",
                "--output",
                csv.to_str().unwrap(),
                query,
            ],
            &env,
        )
    };
    // what `sql --output` leaves beside count.csv: its temporary file is `.count.csv.tmp-PID`
    // (sink::atomic::temp_path), named by a process the test cannot know in advance
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("count.csv") && n != "count.csv")
            .collect()
    };
    let failed = sql_to_file("SELECT count(*) AS n FROM parts; SELECT nonexistent FROM parts");
    assert!(!failed.status.success());
    assert!(!csv.exists(), "a failed query wrote its --output");
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "a failed query left its temporary file"
    );
    let written = sql_to_file("SELECT count(*) AS n FROM parts");
    assert!(written.status.success(), "{}", text(&written.stderr));
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "the temporary file was renamed"
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        format!("n\n{}\n", ids.len())
    );
}

#[test]
fn a_failing_sql_stage_names_the_stage_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let yaml = format!(
        "sources:\n  pool:\n    type: parquet\n    paths: [{}]\ntransforms:\n  pick:\n    type: sql\n    inputs: [pool]\n    query: SELECT id, problem, stepz FROM input\n  scored:\n    type: score\n    inputs: [pick]\nsinks:\n  summary:\n    type: table\n    inputs: [scored]\n",
        input.display()
    );
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = actprm(&["run", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pick") && stderr.contains("stepz"),
        "{stderr}"
    );
}

#[test]
fn the_judge_example_runs_against_a_judge_on_loopback() {
    use judge_server::{critique, JudgeServer, Reply, Seen};
    // a judge that calls the second paragraph wrong whenever there is one
    let server = JudgeServer::start(std::sync::Arc::new(|seen: &Seen| {
        let steps = seen.prompt.matches("</paragraph_").count();
        Reply::Answer {
            content: critique(if steps > 1 { 1 } else { -1 }, steps),
            completion_tokens: 50,
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("judged");
    let url = server.url();
    let out = actprm(
        &["run", "pipelines/judge-active-learning.yaml"],
        &[
            ("JUDGE_URL", url.as_str()),
            ("INPUT", input.to_str().unwrap()),
            ("OUT", out_dir.to_str().unwrap()),
            ("LABEL_BUDGET", "5"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // keep_rate 0.1 of one batch of 24 rows: 2 trajectories go to the judge, each answered once
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("labels used    {:>10}", 2)),
        "{stdout}"
    );
    assert_eq!(server.requests(), 2);
    assert!(out_dir.join("model/manifest.json").is_file());
    assert!(out_dir.join("judge-cache").is_dir());
}

#[test]
fn a_judge_that_does_not_answer_is_refused_before_any_work() {
    let out = actprm(&["run", "pipelines/judge-active-learning.yaml"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("judge `local`: http://127.0.0.1:8089/v1 does not answer"),
        "{}",
        text(&out.stderr)
    );
}

// ---- one test per class of mistake, exact messages ----

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    let yaml = GOOD
        .replace(
            "    inputs: [pool]\n",
            "    inputs: [pool]\n    dleta_pred: 0.5\n",
        )
        .replace("sinks:", "sink:");
    assert_eq!(problems(&yaml, &[]), "\
FILE:9:5: unknown key `dleta_pred` in transform `scored` (score) (did you mean `delta_pred`?); expected one of: batch_rows, check, delta_pred, delta_std, features, head_probs, inputs, max_batch, model, prefix_sharing, share_window, tau, token_budget, watch_model
9 |     dleta_pred: 0.5
  |     ^
FILE:10:1: unknown key `sink` at the top level (did you mean `sinks`?); expected one of: models, judges, sources, transforms, sinks
10 | sink:
   | ^
2 problems in FILE
");
}

#[test]
fn wrong_types_are_located_at_the_value() {
    let yaml = GOOD.replace(
        "    inputs: [pool]\n",
        "    inputs: [pool]\n    batch_rows: many\n    head_probs: sometimes\n",
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:9:17: `batch_rows` in transform `scored` (score): expected a whole number >= 0, got `many`
9 |     batch_rows: many
  |                 ^
FILE:10:17: `head_probs` in transform `scored` (score): expected true or false, got `sometimes`
10 |     head_probs: sometimes
   |                 ^
2 problems in FILE
"
    );
}

#[test]
fn thresholds_outside_0_1_are_refused() {
    let yaml = GOOD.replace(
        "    inputs: [pool]\n",
        "    inputs: [pool]\n    delta_pred: 1.5\n    tau: -0.1\n",
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:9:17: `delta_pred` in transform `scored` (score) must be in [0, 1], got 1.5
9 |     delta_pred: 1.5
  |                 ^
FILE:10:10: `tau` in transform `scored` (score) must be in [0, 1], got -0.1
10 |     tau: -0.1
   |          ^
2 problems in FILE
"
    );
}

#[test]
fn unresolved_inputs_are_located_at_the_name() {
    let yaml = GOOD.replace("    inputs: [scored]\n", "    inputs: [scord]\n");
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:12:14: input `scord` of sink `summary` is not a source or transform (did you mean `scored`?)
12 |     inputs: [scord]
   |              ^
1 problem in FILE
"
    );
}

#[test]
fn cycles_are_reported() {
    let yaml = GOOD.replace(
        "    inputs: [pool]\n",
        "    inputs: [picked]\n  picked:\n    type: select\n    inputs: [scored]\n",
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:6:3: transforms form a cycle: scored -> picked -> scored
6 |   scored:
  |   ^
1 problem in FILE
"
    );
}

#[test]
fn a_pipeline_needs_a_sink() {
    let yaml = GOOD.split("sinks:").next().unwrap().to_string();
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:1:1: the pipeline has no sink: declare one under `sinks` (parquet, jsonl, arrow_ipc, hf_dataset or table)
1 | sources:
  | ^
1 problem in FILE
"
    );
}

#[test]
fn train_needs_a_label_stage_upstream() {
    let yaml = GOOD.replace(
        "sinks:\n  summary:\n    type: table\n    inputs: [scored]\n",
        "  picked:\n    type: select\n    inputs: [scored]\n  trained:\n    type: train\n    inputs: [picked]\n    output: out/x\nsinks:\n  summary:\n    type: table\n    inputs: [trained]\n",
    );
    assert_eq!(problems(&yaml, &[]), "\
FILE:12:3: transform `trained` (train) has no label stage upstream: training needs labels (add a `label` transform between select and train)
12 |   trained:
   |   ^
1 problem in FILE
");
}

#[test]
fn a_required_variable_that_is_missing_is_refused() {
    let yaml = GOOD.replace(
        "tests/data/prm800k_phase1_test.parquet",
        "${POOL:?set POOL to the pool's Parquet files}",
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:4:13: environment variable POOL is not set: set POOL to the pool's Parquet files
4 |     paths: [${POOL:?set POOL to the pool's Parquet files}]
  |             ^
1 problem in FILE
"
    );
}

#[test]
fn a_variable_with_a_newline_is_refused() {
    let yaml = GOOD.replace("tests/data/prm800k_phase1_test.parquet", "${INPUT}");
    assert_eq!(problems(&yaml, &[("INPUT", "x]\n  evil: [y")]), "\
FILE:4:13: environment variable INPUT contains a newline: refused, since it could inject configuration
4 |     paths: [${INPUT}]
  |             ^
1 problem in FILE
");
}

#[test]
fn a_missing_input_file_is_located() {
    let yaml = GOOD.replace("prm800k_phase1_test.parquet", "no_such.parquet");
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:4:12: source `pool`: input tests/data/no_such.parquet: no such file or folder
4 |     paths: [tests/data/no_such.parquet]
  |            ^
1 problem in FILE
"
    );
}

#[test]
fn a_missing_column_is_located() {
    let yaml = GOOD.replace(
        "    paths: [tests/data/prm800k_phase1_test.parquet]\n",
        "    paths: [tests/data/prm800k_phase1_test.parquet]\n    steps_column: completions\n",
    );
    assert_eq!(problems(&yaml, &[]), "\
FILE:5:19: source `pool`: tests/data/prm800k_phase1_test.parquet: column \"completions\" not found: the steps column is missing (columns: id, problem, steps, label); name it with `steps_column`
5 |     steps_column: completions
  |                   ^
1 problem in FILE
");
}

#[test]
fn a_missing_model_directory_is_located() {
    let yaml = format!(
        "models:\n  mine:\n    path: no/such/model\n{}",
        GOOD.replace(
            "    inputs: [pool]\n",
            "    inputs: [pool]\n    model: mine\n"
        )
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:3:11: model `mine`: no/such/model is not a model directory (no manifest.json)
3 |     path: no/such/model
  |           ^
1 problem in FILE
"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = GOOD
        .replace(
            "    inputs: [pool]\n",
            "    inputs: [pool]\n    delta_std: 2\n    colour: red\n",
        )
        .replace("    inputs: [scored]\n", "    inputs: [nowhere]\n");
    let report = problems(&yaml, &[]);
    assert!(report.ends_with("3 problems in FILE\n"), "{report}");
}

#[test]
fn skip_env_skips_the_environment_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        GOOD.replace("prm800k_phase1_test.parquet", "no_such.parquet"),
    )
    .unwrap();
    let out = actprm(&["validate", "--skip-env", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn values_only_their_types_can_check_are_located() {
    // a device and a shard are parsed by their own types; the message still points at the value
    let yaml = format!(
        "models:\n  mine:\n    device: gpu\n{}",
        GOOD.replace("    inputs: [pool]\n", "    inputs: [pool]\n    model: mine\n")
            .replace(
                "sinks:\n  summary:\n    type: table\n    inputs: [scored]\n",
                "  kept:\n    type: filter\n    inputs: [scored]\n    shard: 4/4\nsinks:\n  summary:\n    type: table\n    inputs: [kept]\n"
            )
    );
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:3:13: `device` in model `mine`: unknown device \"gpu\": expected cpu, cuda or cuda:N
3 |     device: gpu
  |             ^
FILE:16:12: `shard` in transform `kept` (filter): is `4/4`; expected i/n with 0 <= i < n, e.g. 0/4
16 |     shard: 4/4
   |            ^
2 problems in FILE
"
    );
}

#[test]
fn a_judge_needs_its_endpoint_and_model() {
    let yaml = format!("judges:\n  local:\n    timeout: 0\n{GOOD}");
    assert_eq!(
        problems(&yaml, &[]),
        "\
FILE:2:3: `url` in judge `local` is required: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1
2 |   local:
  |   ^
FILE:2:3: `model` in judge `local` is required: the model name the endpoint serves
2 |   local:
  |   ^
FILE:3:14: `timeout` in judge `local` must be a number above 0, got 0
3 |     timeout: 0
  |              ^
3 problems in FILE
"
    );
}

/// A judge that calls the second paragraph wrong whenever there is one.
fn second_step_judge() -> judge_server::JudgeServer {
    use judge_server::{critique, JudgeServer, Reply, Seen};
    JudgeServer::start(std::sync::Arc::new(|seen: &Seen| {
        let steps = seen.prompt.matches("</paragraph_").count();
        Reply::Answer {
            content: critique(if steps > 1 { 1 } else { -1 }, steps),
            completion_tokens: 50,
        }
    }))
}

fn labelled_ids(dir: &Path) -> Vec<(String, Option<i32>)> {
    judged_rows(dir)
        .into_iter()
        .map(|(id, _, _, label)| (id, label))
        .collect()
}

#[test]
fn score_filter_then_judge_label_runs_as_one_file() {
    let server = second_step_judge();
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("judged");
    let url = server.url();
    let out = actprm(
        &["run", "pipelines/judge-label.yaml"],
        &[
            ("JUDGE_URL", url.as_str()),
            ("INPUT", input.to_str().unwrap()),
            ("OUT", out_dir.to_str().unwrap()),
            ("KEEP_RATE", "0.25"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // the filter kept a quarter of the rows; exactly those went to the judge, once each
    let kept = common::ids_in(&out_dir.join("filter").join("kept"), "");
    let labelled = labelled_ids(&out_dir);
    assert!(!kept.is_empty(), "nothing kept");
    let mut labelled_ids: Vec<String> = labelled.iter().map(|(id, _)| id.clone()).collect();
    labelled_ids.sort();
    let mut kept_sorted = kept.clone();
    kept_sorted.sort();
    assert_eq!(labelled_ids, kept_sorted);
    assert_eq!(server.requests() as usize, kept.len());
    assert!(labelled.iter().all(|(_, l)| l.is_some()), "{labelled:?}");
    assert!(out_dir.join("judge-cache").is_dir());
    assert!(
        text(&out.stdout).contains("rows in"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_source_can_go_straight_to_the_judge() {
    let server = second_step_judge();
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("judged");
    let transforms =
        "  judged:\n    type: label\n    inputs: [rows]\n    mode: judge\n    judge: j\n";
    run_judged(dir.path(), &server.url(), &input, transforms, &out_dir);
    let records = common::records("prm800k_test_sample.jsonl");
    let labelled = labelled_ids(&out_dir);
    assert_eq!(labelled.len(), records.len());
    assert_eq!(server.requests() as usize, records.len());
    // the scripted judge: the second step is wrong wherever there is one
    for r in &records {
        let expected = if r.steps.len() > 1 { 1 } else { -1 };
        let got = labelled
            .iter()
            .find(|(id, _)| Some(id) == r.id.as_ref())
            .unwrap()
            .1;
        assert_eq!(got, Some(expected), "{:?}", r.id);
    }
}

/// Runs a pipeline file that judges `input` through `transforms` (YAML; the last one is named
/// `judged`) into the Parquet folder `out`, with the judge at `url`.
fn run_judged(dir: &Path, url: &str, input: &Path, transforms: &str, out: &Path) {
    let yaml = format!(
        "judges:\n  j:\n    url: {url}\n    model: m\nsources:\n  rows:\n    type: parquet\n    paths: [{}]\ntransforms:\n{transforms}sinks:\n  out:\n    type: parquet\n    inputs: [judged]\n    path: {}\n",
        input.display(),
        out.display()
    );
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).unwrap();
    let run = actprm(&["run", file.to_str().unwrap()], &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
}

/// (id, selected, judge_status, judge_label) of every row of a labelled output, by id.
fn judged_rows(dir: &Path) -> Vec<(String, Option<bool>, String, Option<i32>)> {
    use arrow::array::{Array, AsArray, Int32Array};
    let mut rows = Vec::new();
    for batch in common::read_parquet_dir(dir, "part-") {
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (ids, status, label) = (column("id"), column("judge_status"), column("judge_label"));
        let (ids, status) = (ids.as_string::<i32>(), status.as_string::<i32>());
        // a label run without a score stage has no `selected` column
        let selected = batch
            .column_by_name("selected")
            .map(|c| c.as_boolean().clone());
        let label = label.as_any().downcast_ref::<Int32Array>().unwrap();
        for i in 0..batch.num_rows() {
            rows.push((
                ids.value(i).to_string(),
                selected
                    .as_ref()
                    .and_then(|s| s.is_valid(i).then(|| s.value(i))),
                status.value(i).to_string(),
                label.is_valid(i).then(|| label.value(i)),
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn score_then_judge_label_is_one_stream() {
    let server = second_step_judge();
    let dir = tempfile::tempdir().unwrap();
    // one row the scorer rejects (its problem is blank)
    let mut records = common::records("prm800k_test_sample.jsonl");
    records[3].problem = "  ".into();
    let unusable = records[3].id.clone().unwrap();
    let input = dir.path().join("rows.parquet");
    common::write_parquet(&input, &actprm::source::jsonl::to_record_batch(&records));
    let out_dir = dir.path().join("judged");
    let transforms = "  scored:\n    type: score\n    inputs: [rows]\n    batch_rows: 5\n  judged:\n    type: label\n    inputs: [scored]\n    mode: judge\n    judge: j\n";
    run_judged(dir.path(), &server.url(), &input, transforms, &out_dir);
    // one stream: no scored copy is written first; the summary names the scoring model
    assert!(!out_dir.join("scored").exists());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["scored_by"]
            .as_str()
            .is_some_and(|m| m.starts_with("minilm")),
        "{summary}"
    );
    // the rows `actprm score` selects, scored independently
    let scored_dir = dir.path().join("scored");
    let score = actprm(
        &[
            "score",
            "-i",
            input.to_str().unwrap(),
            "-o",
            scored_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(score.status.success(), "{}", text(&score.stderr));
    let mut selected_by_score = Vec::new();
    for batch in common::read_parquet_dir(&scored_dir, "part-") {
        use arrow::array::AsArray;
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let selected = batch
            .column_by_name("selected")
            .unwrap()
            .as_boolean()
            .clone();
        for i in 0..batch.num_rows() {
            if selected.value(i) {
                selected_by_score.push(ids.value(i).to_string());
            }
        }
    }
    selected_by_score.sort();
    // every row comes out once, with its scores; exactly the selected ones went to the judge,
    // and the row the scorer rejected failed without a request
    let rows = judged_rows(&out_dir);
    assert_eq!(rows.len(), records.len());
    let failed: Vec<&String> = rows
        .iter()
        .filter(|(_, _, status, _)| status == "failed")
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(failed, vec![&unusable]);
    let judged: Vec<String> = rows
        .iter()
        .filter(|(_, _, status, _)| status != "not_selected" && status != "failed")
        .map(|(id, ..)| id.clone())
        .collect();
    assert!(!judged.is_empty() && judged.len() < rows.len(), "{rows:?}");
    assert_eq!(judged, selected_by_score);
    assert_eq!(server.requests() as usize, judged.len());
    for (id, selected, status, label) in &rows {
        let record = records
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
            .unwrap();
        if status == "failed" {
            // not scored: no selection, no label
            assert_eq!((*selected, *label), (None, None), "{id}");
        } else if status == "not_selected" {
            assert_eq!((*selected, *label), (Some(false), None), "{id}");
        } else {
            // the scripted judge: the second step is wrong wherever there is one
            let expected = if record.steps.len() > 1 { 1 } else { -1 };
            assert_eq!((*selected, *label), (Some(true), Some(expected)), "{id}");
        }
    }
}

#[test]
fn a_score_feeding_the_judge_takes_no_feature_file() {
    // the judge reads the scorer's batches in the same stream: a feature file would never be
    // written, so it is refused rather than silently dropped
    let transforms = "  scored:\n    type: score\n    inputs: [rows]\n    features: f.arrow\n  judged:\n    type: label\n    inputs: [scored]\n    mode: judge\n    judge: j\n";
    let yaml = format!(
        "judges:\n  j:\n    url: http://127.0.0.1:9/v1\n    model: m\nsources:\n  rows:\n    type: parquet\n    paths: [tests/data/prm800k_phase1_test.parquet]\ntransforms:\n{transforms}sinks:\n  out:\n    type: parquet\n    inputs: [judged]\n    path: out/x\n"
    );
    let report = problems(&yaml, &[]);
    assert!(
        report.contains("`features` of transform `scored` is not used when a label stage reads the scores; remove it"),
        "{report}"
    );
}

#[test]
fn labels_from_the_pool_need_a_train_stage() {
    let yaml = GOOD.replace(
        "sinks:\n  summary:\n    type: table\n    inputs: [scored]\n",
        "  labelled:\n    type: label\n    inputs: [scored]\n    mode: pool\nsinks:\n  summary:\n    type: table\n    inputs: [labelled]\n",
    );
    let report = problems(&yaml, &[]);
    assert!(
        report.contains("transform `labelled` (label, mode: pool) must feed a train transform"),
        "{report}"
    );
}

#[test]
fn active_ranges_are_the_commands_rules_located_at_the_keys() {
    // the flags' rules (ActiveSettings, KeepRate): a keep rate of 0 labels nothing, and a
    // retraining learning rate must be positive when retraining is asked for
    let yaml = std::fs::read_to_string("pipelines/pool-active-learning.yaml")
        .unwrap()
        .replace(
            "    inputs: [scored]\n",
            "    inputs: [scored]\n    keep_rate: 0\n",
        )
        .replace(
            "    export_every: 5\n",
            "    export_every: 5\n    retrain_steps: 10\n    retrain_lr: 0\n",
        );
    let report = problems(&yaml, &[]);
    assert!(
        report.contains("`keep_rate` in transform `uncertain` (filter) must be in (0, 1], got 0"),
        "{report}"
    );
    assert!(
        report.contains(
            "`retrain_lr` in transform `trained` (train) must be a number above 0, got 0"
        ),
        "{report}"
    );
    assert!(report.ends_with("2 problems in FILE\n"), "{report}");
}

#[test]
fn filter_keys_the_active_loop_cannot_honour_are_refused_at_their_lines() {
    // the loop takes the filter's rule or keep rate only: a shard, skipped rows, a group
    // report, a restart or a quality rule would be silently dropped, so each is refused
    let yaml = std::fs::read_to_string(root().join("pipelines/pool-active-learning.yaml"))
        .unwrap()
        .replace(
            "    type: filter\n    inputs: [scored]\n",
            "    type: filter\n    inputs: [scored]\n    shard: \"1/2\"\n    write_skipped: true\n    where: \"first_error = -1\"\n",
        );
    let report = problems(&yaml, &[]);
    for (at, field) in [
        ("19:12", "shard"),
        ("20:20", "write_skipped"),
        ("21:12", "where"),
    ] {
        let expected = format!(
            "FILE:{at}: `{field}` of transform `uncertain` is not used when a train stage \
             follows (the active loop takes the filter's rule or keep_rate only); remove it"
        );
        assert!(report.contains(&expected), "{expected}\nin\n{report}");
    }
    // the shipped file, without them, is fine
    let o = actprm(&["validate", "pipelines/pool-active-learning.yaml"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn a_label_stage_takes_the_cache_and_batch_keys_of_actprm_label() {
    use judge_server::{critique, JudgeServer, Reply, Seen};
    let server = JudgeServer::start(std::sync::Arc::new(|seen: &Seen| {
        let steps = seen.prompt.matches("</paragraph_").count();
        Reply::Answer {
            content: critique(-1, steps),
            completion_tokens: 10,
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let cache = dir.path().join("answers");
    // the judge labels the source as it is, in batches of 5, its answers in `cache`
    let yaml = format!(
        "judges:\n  j: {{url: \"{url}\", model: m}}\n\
         sources:\n  rows: {{type: parquet, paths: [{input}]}}\n\
         transforms:\n  judged: {{type: label, inputs: [rows], mode: judge, judge: j, \
         batch_rows: 5, cache: {cache}}}\n\
         sinks:\n  out: {{type: parquet, inputs: [judged], path: {out}}}\n",
        url = server.url(),
        input = input.display(),
        cache = cache.display(),
        out = dir.path().join("out").display(),
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let o = actprm(&["run", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = common::read_parquet_dir(&dir.path().join("out"), "part-");
    let total: usize = rows.iter().map(|b| b.num_rows()).sum();
    assert!(total > 0);
    assert_eq!(server.requests() as usize, total);
    assert!(cache.is_dir() && !dir.path().join("out/judge-cache").exists());
    // no_cache: nothing is kept anywhere, and a rerun asks again
    let yaml = yaml.replace(&format!("cache: {}", cache.display()), "no_cache: true");
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::write(&file, &yaml).unwrap();
    let o = actprm(&["run", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(server.requests() as usize, 2 * total);
    assert!(!cache.exists() && !dir.path().join("out/judge-cache").exists());
}

/// Issue 30 item 1: an sql transform between filter and a judge label chooses which kept rows the
/// judge reads, and one after the label maps the labelled rows on their way to the sink, in one
/// pipeline run. Both are checked against independent runs: `actprm filter` with the same keep
/// rate, and the fixture's own step counts.
#[test]
fn sql_transforms_before_and_after_a_judge_label() {
    use arrow::array::{Array, AsArray, Int32Array};
    let server = second_step_judge();
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let out_dir = dir.path().join("judged");
    let yaml = |label: &str, tail: &str| {
        format!(
            "judges:\n  j:\n    url: {}\n    model: m\nsources:\n  rows:\n    type: parquet\n    paths: [{}]\ntransforms:\n  scored: {{type: score, inputs: [rows]}}\n  kept: {{type: filter, inputs: [scored], keep_rate: 0.5}}\n  multi:\n    type: sql\n    inputs: [kept]\n    query: SELECT * FROM input WHERE array_length(steps) > 2\n  judged: {{type: label, inputs: [multi], {label}}}\n{tail}",
            server.url(),
            input.display()
        )
    };
    let file = dir.path().join("p.yaml");
    let lines_dir = dir.path().join("judged-lines");
    let tail = format!(
        "  slim:\n    type: sql\n    inputs: [judged]\n    query: SELECT id, judge_label, judge_status FROM input\nsinks:\n  out: {{type: parquet, inputs: [slim], path: {}}}\n  lines: {{type: jsonl, inputs: [slim], path: {}}}\n",
        out_dir.display(),
        lines_dir.display()
    );
    std::fs::write(&file, yaml("mode: judge, judge: j", &tail)).unwrap();
    let run = actprm(&["run", file.to_str().unwrap()], &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));

    // the reference: the same keep rate by `actprm filter`, then the rows of more than two steps
    let reference = dir.path().join("reference");
    let filtered = actprm(
        &[
            "filter",
            "-q",
            "-i",
            input.to_str().unwrap(),
            "-o",
            reference.to_str().unwrap(),
            "--keep-rate",
            "0.5",
        ],
        &[],
    );
    assert!(filtered.status.success(), "{}", text(&filtered.stderr));
    let records = common::records("prm800k_test_sample.jsonl");
    let steps_of = |id: &str| {
        records
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
            .map(|r| r.steps.len())
            .unwrap()
    };
    let mut want: Vec<String> = common::ids_in(&reference.join("kept"), "")
        .into_iter()
        .filter(|id| steps_of(id) > 2)
        .collect();
    want.sort();
    let all_kept = common::ids_in(&reference.join("kept"), "").len();
    assert!(
        !want.is_empty() && want.len() < all_kept,
        "the query must drop some kept rows: {want:?} of {all_kept}"
    );
    // the judge read exactly those, once each
    assert_eq!(server.requests() as usize, want.len());
    // the sink holds the second query's columns, for exactly those rows
    let mut got = Vec::new();
    for batch in common::read_parquet_dir(&out_dir, "part-") {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "judge_label", "judge_status"]);
        let ids = batch.column(0).as_string::<i32>().clone();
        let labels = batch.column(1).clone();
        let labels = labels.as_any().downcast_ref::<Int32Array>().unwrap();
        for i in 0..batch.num_rows() {
            // the scripted judge calls the second step wrong
            assert!(labels.is_valid(i) && labels.value(i) == 1, "row {i}");
            got.push(ids.value(i).to_string());
        }
    }
    got.sort();
    assert_eq!(got, want);
    // a second data sink after the label holds the same rows, each judged once
    let mut lines: Vec<String> = std::fs::read_dir(&lines_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(|l| {
                    let row: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(row["judge_label"], 1, "{row}");
                    row["id"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, want);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows_out"], want.len() as u64, "{summary}");

    // the active loop labels the rows its filter picks, as scored: no sql between them
    let train = "  trained: {type: train, inputs: [judged], output: loop}\nsinks:\n  t: {type: table, inputs: [trained]}\n";
    std::fs::write(&file, yaml("mode: pool", train)).unwrap();
    let o = actprm(&["validate", "--skip-env", file.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("cannot come between filter and a label that feeds `trained`"),
        "{}",
        text(&o.stderr)
    );
}
