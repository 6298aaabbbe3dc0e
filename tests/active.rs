//! The streaming active loop on a small real pool, end to end: every row gets a recorded
//! decision, labels are only spent on selected rows, the scorer is refreshed with new heads, and a
//! stopped run resumes to the same result as an uninterrupted one.

use crate::common;

use std::collections::BTreeMap;

use actprm::pipeline::active::{run_active, ActiveJob};
use actprm::pipeline::ScoreJob;
use actprm::select::{Keep, RatePicks};
use actprm::train::TrainConfig;
use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use common::*;

fn job(input: &std::path::Path, out: &std::path::Path) -> ActiveJob {
    let mut score = ScoreJob::new(vec![input.display().to_string()], out.to_path_buf());
    score.batch_rows = 6;
    ActiveJob {
        score,
        output: out.to_path_buf(),
        cold_start: Some((4, 7)),
        train: TrainConfig {
            lr: 5e-3,
            warmup_steps: 0,
            seed: 7,
            ..TrainConfig::default()
        },
        selection: Keep::Rate(0.5),
        picks: RatePicks::Diverse,
        retrain_steps: 0,
        retrain_lr: 1e-3,
        label_budget: Some(10),
        export_every: 1,
        dev: vec![],
        eval_every: 1000,
        resume: false,
        overwrite: false,
        stop_after_rows: None,
        judge: None,
        label_format: Default::default(),
        format: Default::default(),
    }
}

type Decision = (bool, bool, String, String, f32);

/// source_row -> (selected, label_used, model_version, note, uncertainty)
fn decisions(out: &std::path::Path) -> BTreeMap<u64, Decision> {
    let mut map = BTreeMap::new();
    for b in read_parquet_dir(&out.join("decisions"), "decisions-") {
        let rows = b
            .column_by_name("source_row")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let selected = b.column_by_name("selected").unwrap().as_boolean();
        let used = b.column_by_name("label_used").unwrap().as_boolean();
        let version = b
            .column_by_name("model_version")
            .unwrap()
            .as_string::<i32>();
        let note = b.column_by_name("label_note").unwrap().as_string::<i32>();
        let uncertainty = b
            .column_by_name("uncertainty")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float32Type>();
        for i in 0..b.num_rows() {
            let old = map.insert(
                rows.value(i),
                (
                    selected.value(i),
                    used.value(i),
                    version.value(i).to_string(),
                    note.value(i).to_string(),
                    uncertainty.value(i),
                ),
            );
            assert!(old.is_none(), "row {} recorded twice", rows.value(i));
        }
    }
    map
}

#[test]
fn a_small_pool_runs_end_to_end_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let straight = dir.path().join("straight");
    let summary = run_active(&job(&input, &straight)).unwrap();
    assert_eq!(summary.rows_scored, 24);
    assert_eq!(summary.rows_selected, 12, "half of each batch of 6");
    assert_eq!(summary.labels_used, 10, "the budget caps labels");
    assert_eq!(summary.over_budget, 2);
    let d = decisions(&straight);
    assert_eq!(
        d.keys().copied().collect::<Vec<_>>(),
        (0..24).collect::<Vec<_>>()
    );
    assert_eq!(d.values().filter(|v| v.1).count(), 10);
    assert!(
        d.values().all(|v| !v.1 || v.0),
        "labels only for selected rows"
    );
    assert_eq!(d.values().filter(|v| v.3 == "over budget").count(), 2);
    let versions: std::collections::BTreeSet<&String> = d.values().map(|v| &v.2).collect();
    assert!(
        versions.len() >= 3,
        "the scorer picked up refreshed heads: {versions:?}"
    );

    // stop after 12 rows, then resume: same decisions, same labels, same final model
    let split = dir.path().join("split");
    let mut first = job(&input, &split);
    first.stop_after_rows = Some(12);
    let s1 = run_active(&first).unwrap();
    assert_eq!(s1.state.rows_done, 12);
    let again = run_active(&first).expect_err("a used folder is not silently overwritten");
    assert!(
        again
            .to_string()
            .contains("holds a previous run; pass --resume"),
        "{again}"
    );
    // a run stopped by an actprm that named its commit point `state.json` resumes too
    std::fs::rename(split.join("loop-state.json"), split.join("state.json")).unwrap();
    let again = run_active(&first).expect_err("the legacy commit point is a previous run");
    assert!(again.to_string().contains("pass --resume"), "{again}");
    let mut second = job(&input, &split);
    second.resume = true;
    let s2 = run_active(&second).unwrap();
    assert!(
        !split.join("state.json").exists(),
        "the legacy name is left behind"
    );
    assert!(split.join("loop-state.json").is_file());
    assert_eq!(s2.state.rows_done, 24);
    assert_eq!(s2.state.labels_used, 10);
    let resumed = decisions(&split);
    let strip = |m: &BTreeMap<u64, Decision>| {
        m.iter()
            .map(|(k, v)| (*k, v.0, v.1, v.2.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed), strip(&d));
    let a = actprm::model::LoadedModel::from_dir(&straight.join("model")).unwrap();
    let b = actprm::model::LoadedModel::from_dir(&split.join("model")).unwrap();
    assert_eq!(a.version(), b.version(), "same final heads");
}

/// source_row -> (selected, uncertainty)
fn selections(out: &std::path::Path) -> BTreeMap<u64, (bool, f32)> {
    decisions(out)
        .into_iter()
        .map(|(row, d)| (row, (d.0, d.4)))
        .collect()
}

/// `--picks most-uncertain` takes the top of each batch; `diverse` (the default) takes as many,
/// not always the top.
#[test]
fn a_keep_rate_picks_the_most_uncertain_or_spreads_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    for picks in [RatePicks::MostUncertain, RatePicks::Diverse] {
        let out = dir.path().join(format!("{picks:?}"));
        let mut j = job(&input, &out);
        j.picks = picks;
        j.selection = Keep::Rate(1.0 / 3.0);
        j.label_budget = None;
        let summary = run_active(&j).unwrap();
        assert_eq!(summary.rows_selected, 8, "a third of 24 rows");
        let rows = selections(&out);
        assert_eq!(rows.len(), 24);
        // batches of 6 rows in source order
        let batches: Vec<Vec<(bool, f32)>> = rows
            .values()
            .copied()
            .collect::<Vec<_>>()
            .chunks(6)
            .map(<[_]>::to_vec)
            .collect();
        let top_of_each = batches.iter().all(|b| {
            let lowest_picked = b
                .iter()
                .filter(|r| r.0)
                .map(|r| r.1)
                .fold(f32::MAX, f32::min);
            b.iter().filter(|r| !r.0).all(|r| r.1 <= lowest_picked)
        });
        // diverse picks from the whole batch here (6 rows < 10 candidates per pick)
        assert_eq!(
            top_of_each,
            picks == RatePicks::MostUncertain,
            "{picks:?}: {batches:?}"
        );
    }
}

/// `--retrain-steps`: the final heads are trained afresh on every label of the run, also when the
/// run was stopped and resumed in between (the labels of each commit are kept beside it).
#[test]
fn the_final_heads_retrain_on_every_label_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let with_retrain = |out: &std::path::Path| {
        let mut j = job(&input, out);
        j.retrain_steps = 9;
        j.label_budget = None;
        j
    };
    let straight = dir.path().join("straight");
    let summary = run_active(&with_retrain(&straight)).unwrap();
    assert_eq!(summary.labels_used, 12);
    assert_eq!(summary.retrained_on, Some(12), "{summary:?}");
    let one_pass = actprm::model::LoadedModel::from_dir(&straight.join("model-one-pass")).unwrap();
    let model = actprm::model::LoadedModel::from_dir(&straight.join("model")).unwrap();
    assert_ne!(one_pass.version(), model.version());
    assert_eq!(
        summary.final_model,
        model.version(),
        "the summary names model/"
    );
    let trainer =
        actprm::train::Trainer::resume(&straight.join("model"), tch::Device::Cpu).unwrap();
    assert_eq!(
        trainer.step(),
        9,
        "the final heads took the retraining steps"
    );
    let labelled = read_features_dir(&straight.join("labelled"));
    assert_eq!(labelled, 12, "every label kept with its features");

    let split = dir.path().join("split");
    let mut first = with_retrain(&split);
    first.stop_after_rows = Some(12);
    let stopped = serde_json::to_value(run_active(&first).unwrap()).unwrap();
    assert_commit_record_names_every_file(&split, 12);
    // the summary reports the state's counts, not its list of files
    assert_eq!(stopped["state"]["rows_done"], 12, "{stopped}");
    assert!(stopped["state"].get("committed").is_none(), "{stopped}");
    // a committed file gone: the resume refuses (its rows would be missing), naming it
    let part = split.join("scored/part-00001.parquet");
    let aside = dir.path().join("aside.parquet");
    std::fs::rename(&part, &aside).unwrap();
    let mut second = with_retrain(&split);
    second.resume = true;
    let refused = run_active(&second).expect_err("a committed part is missing");
    assert!(
        refused.to_string().contains("part-00001.parquet")
            && refused.to_string().contains("--overwrite"),
        "{refused}"
    );
    std::fs::rename(&aside, &part).unwrap();
    let resumed = run_active(&second).unwrap();
    assert_eq!(resumed.retrained_on, Some(12));
    let again = actprm::model::LoadedModel::from_dir(&split.join("model")).unwrap();
    assert_eq!(
        again.version(),
        model.version(),
        "same retrained heads after a resume"
    );
}

/// `loop-state.json` promises every data file the loop's commits wrote, with the rows a reader
/// finds in it, and nothing else; its decisions cover the `rows` done.
fn assert_commit_record_names_every_file(out: &std::path::Path, rows: u64) {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("loop-state.json")).unwrap()).unwrap();
    let promised: BTreeMap<String, u64> =
        serde_json::from_value(state["committed"].clone()).unwrap();
    let mut found = BTreeMap::new();
    for sub in ["decisions", "scored", "rejects", "labelled"] {
        for e in std::fs::read_dir(out.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            found.insert(name, actprm::sink::format::rows_in(&e.path()).unwrap());
        }
    }
    assert_eq!(promised, found);
    let decided: u64 = promised
        .iter()
        .filter(|(f, _)| f.starts_with("decisions/"))
        .map(|(_, r)| r)
        .sum();
    assert_eq!(decided, rows);
    assert!(promised.keys().any(|f| f.starts_with("labelled/")));
}

fn read_features_dir(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            actprm::formats::features::read_features(&e.path())
                .unwrap()
                .1
                .len()
        })
        .sum()
}
