//! `actprm filter` at scale semantics, on a generated corpus with the tiny backbone: a run killed
//! with SIGKILL at arbitrary moments and rerun finishes with exactly the rows of an uninterrupted
//! run; shards split the work without overlap and `filter-verify` proves completeness.

mod common;

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
