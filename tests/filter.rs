//! `actprm filter` at scale semantics, on a generated corpus with the tiny backbone: a run killed
//! with SIGKILL at arbitrary moments and rerun finishes with exactly the rows of an uninterrupted
//! run; shards split the work without overlap and `filter-verify` proves completeness.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn kept_ids(out: &Path) -> Vec<String> {
    ids_in(&out.join("kept"), "")
}

fn setup(dir: &Path) -> (String, String) {
    let model = tiny_model(dir);
    let corpus = corpus(dir, 3000, 3, 250);
    (model.display().to_string(), corpus.display().to_string())
}

#[test]
fn killed_runs_resume_to_exactly_the_uninterrupted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(dir.path());
    let straight = dir.path().join("straight");
    let o = actprm(&filter_args(&model, &corpus, straight.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["rows_in"], 3000);
    assert_eq!(summary["units"], 12);
    let expected = kept_ids(&straight);
    assert_eq!(
        expected.len() as u64,
        summary["rows_kept"].as_u64().unwrap()
    );
    assert_eq!(
        expected.iter().collect::<BTreeSet<_>>().len(),
        expected.len()
    );

    // kill -9 at varying moments until a run gets to the end
    let crashed = dir.path().join("crashed");
    let mut kills = 0;
    let mut rng = actprm::rng::NormalRng::new(42);
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_actprm"))
            .args(filter_args(&model, &corpus, crashed.to_str().unwrap()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(300 + (rng.next_unit() * 1500.0) as u64);
        std::thread::sleep(wait);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success());
                break;
            }
            None if kills < 4 => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                assert!(child.wait().unwrap().success());
                break;
            }
        }
    }
    assert!(
        kills >= 1,
        "the run was never interrupted; make the corpus larger"
    );
    let o = actprm(&filter_args(&model, &corpus, crashed.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        again["units_this_run"], 0,
        "a finished job has nothing left to do"
    );
    assert_eq!(again["rows_in"], 3000);
    assert_eq!(
        kept_ids(&crashed),
        expected,
        "after {kills} kills: no row lost or duplicated"
    );
}

#[test]
fn shards_split_the_work_and_verify_proves_completeness() {
    let dir = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(dir.path());
    let whole = dir.path().join("whole");
    assert!(
        actprm(&filter_args(&model, &corpus, whole.to_str().unwrap()))
            .status
            .success()
    );
    let mut outs = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("shard{i}"));
        let shard = format!("{i}/3");
        let mut args = filter_args(&model, &corpus, out.to_str().unwrap());
        args.extend(["--shard", &shard]);
        let o = actprm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.push(out);
    }
    let mut union: Vec<String> = outs.iter().flat_map(|o| kept_ids(o)).collect();
    union.sort();
    assert_eq!(union, kept_ids(&whole));
    let names: Vec<String> = outs.iter().map(|o| o.display().to_string()).collect();
    let verify = |shards: &[String]| {
        let mut args = vec!["filter-verify"];
        args.extend(shards.iter().map(String::as_str));
        args.extend(["-i", corpus.as_str()]);
        actprm(&args)
    };
    let o = verify(&names);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("12 units, 3000 rows in"));
    // one shard missing: verify names what is missing and fails
    let o = verify(&names[..2]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing: "), "{}", stderr(&o));
}

/// A keep rate holds over each unit: 1 % of batches of 25 rows rounds to nothing per batch, but
/// keeps round(0.01 * 250) = 3 rows of every 250-row unit.
#[test]
fn a_small_keep_rate_is_not_rounded_away_in_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path()).display().to_string();
    let corpus = corpus(dir.path(), 500, 1, 250).display().to_string();
    let out = dir.path().join("kept-1pc");
    let mut args = filter_args(&model, &corpus, out.to_str().unwrap());
    let rate = args.iter().position(|a| *a == "--keep-rate").unwrap() + 1;
    args[rate] = "0.01";
    let batch = args.iter().position(|a| *a == "--batch-rows").unwrap() + 1;
    args[batch] = "25";
    let o = actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["units"], 2, "{summary}");
    assert_eq!(summary["rows_kept"], 6, "{summary}");
    assert_eq!(kept_ids(&out).len(), 6);
}

/// (id, problem, reward = min step score, first_error) of every row `actprm score` wrote.
fn scored_rows(out: &Path) -> Vec<(String, String, f32, i32)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Int32Type};
    let mut rows = Vec::new();
    for b in read_parquet_dir(out, "part-") {
        let ids = b.column_by_name("id").unwrap().as_string::<i32>();
        let problems = b.column_by_name("problem").unwrap().as_string::<i32>();
        let means = b.column_by_name("step_mean").unwrap().as_list::<i32>();
        let first = b
            .column_by_name("first_error")
            .unwrap()
            .as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let steps = means.value(i);
            let min = steps
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            rows.push((
                ids.value(i).to_string(),
                problems.value(i).to_string(),
                min,
                first.value(i),
            ));
        }
    }
    rows
}

#[test]
fn good_rows_and_best_of_n_agree_with_a_computation_over_scores_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // PRM800K test trajectories, several per problem, consecutive by problem, one row group
    let file = std::fs::File::open(data("prm800k_phase1_test.parquet")).unwrap();
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let input = dir.path().join("pool.parquet");
    write_parquet(&input, &all);
    let (model, input) = (model.to_str().unwrap(), input.to_str().unwrap());
    let scored = dir.path().join("scored");
    let o = actprm(&[
        "score",
        "-i",
        input,
        "-o",
        scored.to_str().unwrap(),
        "--model",
        model,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = scored_rows(&scored);
    assert_eq!(rows.len(), all.num_rows());
    let filter = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "filter",
            "-i",
            input,
            "-o",
            out.to_str().unwrap(),
            "--model",
            model,
        ];
        args.extend(extra);
        let o = actprm(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        ids_in(&out.join("kept"), "")
    };

    // a predicate over the scored columns and the reward: a threshold at the median reward
    let mut rewards: Vec<f32> = rows.iter().map(|r| r.2).collect();
    rewards.sort_by(f32::total_cmp);
    let threshold = format!("{}", rewards[rewards.len() / 2]);
    let at: f64 = threshold.parse().unwrap();
    let condition = format!("first_error = -1 AND reward > {threshold}");
    let kept = filter("where", &["--reward", "min", "--where", &condition]);
    let mut expected: Vec<String> = rows
        .iter()
        .filter(|r| r.3 == -1 && f64::from(r.2) > at)
        .map(|r| r.0.clone())
        .collect();
    expected.sort();
    assert!(
        !expected.is_empty() && expected.len() < rows.len(),
        "a real choice"
    );
    assert_eq!(kept, expected);
    // the output folder is a table as it is: its kept rows, with their reward
    let q = actprm(&[
        "sql",
        "--table",
        &format!("k={}", dir.path().join("where").display()),
        "--format",
        "csv",
        "SELECT count(*) AS n, min(reward) > 0 AS positive FROM k",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert_eq!(
        String::from_utf8_lossy(&q.stdout),
        format!("n,positive\n{},true\n", expected.len())
    );

    // best-of-2 per problem by the min reward (ties to the earlier row)
    let kept = filter("best", &["--top-k", "2", "--per", "problem"]);
    let mut expected = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let end = (start..rows.len())
            .find(|&i| rows[i].1 != rows[start].1)
            .unwrap_or(rows.len());
        let mut group: Vec<usize> = (start..end).collect();
        group.sort_by(|&a, &b| rows[b].2.total_cmp(&rows[a].2).then(a.cmp(&b)));
        expected.extend(group.iter().take(2).map(|&i| rows[i].0.clone()));
        start = end;
    }
    expected.sort();
    assert!(expected.len() < rows.len(), "groups of more than two");
    assert_eq!(kept, expected);

    // a group that runs on into the next row group is refused, not split silently
    let split = dir.path().join("split.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(50))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&split).unwrap(),
        all.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&all).unwrap();
    w.close().unwrap();
    let out = dir.path().join("split_out");
    let o = actprm(&[
        "filter",
        "-i",
        split.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        model,
        "--top-k",
        "2",
        "--per",
        "problem",
    ]);
    assert!(
        !o.status.success(),
        "a group split across row groups was accepted"
    );
    assert!(
        stderr(&o).contains("runs on from one row group"),
        "{}",
        stderr(&o)
    );
}

/// `filter --label-format trl` (issue 31, item 5): the kept rows carry TRL's stepwise layout,
/// labelled by the model's predicted first error: the steps up to it, true before it, false at it.
#[test]
fn filter_writes_the_trl_layout_from_predicted_first_errors() {
    use arrow::array::{Array, AsArray};
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("trl");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "filter",
            "-q",
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--keep-rate",
            "1",
        ];
        args.extend(extra);
        actprm(&args)
    };
    let o = run(&["--label-format", "trl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = 0;
    let mut with_error = 0;
    for b in read_parquet_dir(&out.join("kept"), "") {
        let steps = b.column_by_name("steps").unwrap().as_list::<i32>();
        let first = b
            .column_by_name("first_error")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        let prompt = b.column_by_name("prompt").unwrap().as_string::<i32>();
        let problem = b.column_by_name("problem").unwrap().as_string::<i32>();
        let completions = b.column_by_name("completions").unwrap().as_list::<i32>();
        let labels = b.column_by_name("labels").unwrap().as_list::<i32>();
        for i in 0..b.num_rows() {
            rows += 1;
            assert_eq!(prompt.value(i), problem.value(i));
            let all = steps.value(i);
            let all = all.as_string::<i32>();
            let k = first.value(i);
            let kept = if k < 0 { all.len() } else { k as usize + 1 };
            with_error += usize::from(k >= 0);
            let got = completions.value(i);
            let got = got.as_string::<i32>();
            assert_eq!(got.len(), kept, "row {i}: first error {k}");
            for j in 0..kept {
                assert_eq!(got.value(j), all.value(j));
            }
            let l = labels.value(i);
            let l = l.as_boolean();
            let want: Vec<bool> = (0..kept).map(|j| k < 0 || j < k as usize).collect();
            let got: Vec<bool> = (0..l.len()).map(|j| l.value(j)).collect();
            assert_eq!(got, want, "row {i}");
        }
    }
    assert_eq!(rows, 24);
    assert!(with_error > 0, "no predicted error to cut at");
    // a resume with another layout would mix parts: refused, named as the flag
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--label-format"), "{}", stderr(&o));
}

/// `filter --picks diverse` (issue 30 item 1: a keep rate chosen by Algorithm 1's strategy code,
/// as `active --picks` chooses): per unit as many rows as `--picks most-uncertain` keeps, other
/// rows, and exactly the rows the strategy picks over the step features and uncertainties that a
/// separate `actprm score --features` run writes, batch by batch with the unit's quota.
#[test]
fn diverse_picks_choose_over_the_step_features_a_score_run_writes() {
    use actprm::select::{Candidates, Decision, RatePicks, RateQuota, Strategy};
    use arrow::array::AsArray;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let corpus = corpus(dir.path(), 200, 1, 100);
    let (model, corpus) = (model.to_str().unwrap(), corpus.to_str().unwrap());
    let filter = |picks: &str| {
        let out = dir.path().join(picks);
        let o = actprm(&[
            "filter",
            "-q",
            "-i",
            corpus,
            "-o",
            out.to_str().unwrap(),
            "--model",
            model,
            "--keep-rate",
            "0.1",
            "--batch-rows",
            "50",
            "--picks",
            picks,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        kept_ids(&out)
    };
    let diverse = filter("diverse");
    let ranked = filter("most-uncertain");
    assert_eq!((diverse.len(), ranked.len()), (20, 20));
    assert_ne!(
        diverse, ranked,
        "diverse picks are not the top of each batch"
    );

    // the reference: scores and step features from `actprm score`, in input order
    let scored = dir.path().join("scored");
    let features = dir.path().join("features.arrow");
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        corpus,
        "-o",
        scored.to_str().unwrap(),
        "--model",
        model,
        "--batch-rows",
        "50",
        "--features",
        features.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows: Vec<(String, f32)> = Vec::new();
    for b in read_parquet_dir(&scored, "part-") {
        let ids = b.column_by_name("id").unwrap().as_string::<i32>().clone();
        let uncertainty = b
            .column_by_name("uncertainty")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float32Type>()
            .clone();
        for i in 0..b.num_rows() {
            rows.push((ids.value(i).to_string(), uncertainty.value(i)));
        }
    }
    let (_, steps) = actprm::formats::features::read_features(&features).unwrap();
    assert_eq!((rows.len(), steps.len()), (200, 200));
    let strategy = Strategy::of_loop(actprm::select::Keep::Rate(0.1), RatePicks::Diverse);
    let mut want = Vec::new();
    for unit in 0..2 {
        let mut quota = RateQuota::default();
        for batch in 0..2 {
            let range = unit * 100 + batch * 50..unit * 100 + batch * 50 + 50;
            let decisions: Vec<Decision> = rows[range.clone()]
                .iter()
                .map(|(_, u)| Decision {
                    selected: false,
                    aleatoric: false,
                    epistemic: false,
                    uncertainty: *u,
                })
                .collect();
            let embeddings: Vec<Vec<f32>> = steps[range.clone()]
                .iter()
                .map(|f| actprm::select::trajectory_embedding(&f.features, f.steps))
                .collect();
            let mut rng =
                actprm::rng::NormalRng::new(actprm::pipeline::filter::PICKS_SEED ^ quota.offered);
            let candidates = Candidates {
                decisions: &decisions,
                embeddings: &embeddings,
                warm_start: false,
                quota: strategy.quota(&mut quota, 50),
            };
            for i in strategy.choose(&candidates, &mut rng) {
                want.push(rows[range.start + i].0.clone());
            }
        }
    }
    want.sort();
    assert_eq!(diverse, want);

    // the threshold rule keeps every uncertain row: picks has nothing to choose there
    let o = actprm(&[
        "filter",
        "-i",
        corpus,
        "-o",
        dir.path().join("rule").to_str().unwrap(),
        "--model",
        model,
        "--picks",
        "diverse",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("picks"), "{}", stderr(&o));
}
