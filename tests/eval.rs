//! `actprm eval` on every input layout: ProcessBench JSON arrays, JSON Lines, Parquet, features.

use crate::common;

use common::*;

#[test]
fn every_input_layout_evaluates_with_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    // the same six trajectories in ProcessBench JSON, JSON Lines and Parquet
    let pb = data("pb_subset.json");
    let recs = actprm::source::jsonl::read_labelled(&pb).unwrap();
    assert_eq!(recs.len(), 6);
    let jsonl = dir.path().join("as_jsonl.jsonl");
    let lines: Vec<String> =
        serde_json::from_str::<Vec<serde_json::Value>>(&std::fs::read_to_string(&pb).unwrap())
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let parquet = dir.path().join("as_parquet.parquet");
    write_parquet(&parquet, &actprm::source::jsonl::to_record_batch(&recs));
    let o = actprm(&[
        "eval",
        "--json",
        "--tau",
        "0.5",
        pb.to_str().unwrap(),
        jsonl.to_str().unwrap(),
        parquet.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for name in ["pb_subset", "as_jsonl", "as_parquet"] {
        assert_eq!(r["subsets"][name]["n"], 6, "{r}");
        assert_eq!(r["subsets"][name]["n_error"], 4);
        assert_eq!(r["subsets"][name]["n_correct"], 2);
    }
    assert_eq!(r["subsets"]["pb_subset"], r["subsets"]["as_jsonl"]);
    assert_eq!(r["subsets"]["pb_subset"], r["subsets"]["as_parquet"]);
    assert_eq!(r["tau"], 0.5);
    assert!(r["model_version"].as_str().unwrap().contains('@'));

    // features: scoring stored features with the heads alone gives the same per-subset result
    let out = dir.path().join("scored");
    let o = actprm(&[
        "score",
        "-i",
        parquet.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--features",
        dir.path().join("as_features.arrow").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = actprm(&[
        "eval",
        "--json",
        "--tau",
        "0.5",
        dir.path().join("as_features.arrow").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["subsets"]["as_features"], r["subsets"]["as_parquet"]);
}

#[test]
fn tau_can_be_chosen_on_the_first_subset() {
    let pb = data("pb_subset.json");
    let other = data("bigbench_mistake_sample.jsonl");
    let o = actprm(&[
        "eval",
        "--json",
        "--tau-from-first",
        pb.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["tau_rule"], "chosen on pb_subset");
    assert_eq!(
        r["order"],
        serde_json::json!(["pb_subset", "bigbench_mistake_sample"])
    );
    let f1 = r["subsets"]["pb_subset"]["f1"].as_f64().unwrap();
    // the chosen tau is at least as good on its own subset as the default 0.5
    let fixed = actprm(&["eval", "--json", "--tau", "0.5", pb.to_str().unwrap()]);
    let fixed: serde_json::Value = serde_json::from_slice(&fixed.stdout).unwrap();
    assert!(f1 >= fixed["subsets"]["pb_subset"]["f1"].as_f64().unwrap());
}

#[test]
fn a_malformed_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(data("bigbench_mistake_sample.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(2).collect();
    lines.push("{\"input\": \"1 + 1 =\", \"steps\": [\"2\"], \"mistake_index\": 5}");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let o = actprm(&["eval", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.jsonl:3: label 5 is out of range for 1 steps"),
        "{}",
        stderr(&o)
    );
}

/// The Rust arithmetic check against its Python prototype (`tools/arith_check/check.py`, run by
/// `tools/arith_check/reference_fixture.py` over the three real sample files): the same steps
/// checked and the same steps flagged as stating a false equality.
#[test]
fn the_arithmetic_check_agrees_with_its_python_reference() {
    use actprm::score::check::{check_step, StepCheck};
    let text = std::fs::read_to_string(data("arith_check_reference.jsonl")).unwrap();
    let (mut steps_seen, mut flagged) = (0, 0);
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let indices = |key: &str| -> Vec<u64> {
            record[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        let (checked, flags) = (indices("checked"), indices("flags"));
        for (i, step) in record["steps"].as_array().unwrap().iter().enumerate() {
            let step = step.as_str().unwrap();
            let verdict = check_step(step);
            let place = format!("{} row {} step {i}: {step}", record["file"], record["row"]);
            let i = i as u64;
            assert_eq!(
                matches!(verdict, StepCheck::False { .. }),
                flags.contains(&i),
                "flag of {place}: {verdict:?}"
            );
            assert_eq!(
                verdict != StepCheck::NotChecked,
                checked.contains(&i),
                "checked {place}: {verdict:?}"
            );
            steps_seen += 1;
            flagged += usize::from(flags.contains(&i));
        }
    }
    assert!(
        steps_seen > 200 && flagged >= 10,
        "{steps_seen} steps, {flagged} flagged"
    );
}

/// `eval --check min` predicts the earlier of the model's first error and the first false
/// equality: on BIG-Bench-Mistake's arithmetic it finds errors the default model misses. The
/// embedded default's manifest joins the check, so plain `eval` is `--check min`; a feature store
/// carries the verdicts and evaluates the same, and one scored without them is refused.
#[test]
fn the_arithmetic_check_finds_errors_the_model_misses() {
    let dir = tempfile::tempdir().unwrap();
    let bbm = data("bigbench_mistake_sample.jsonl");
    let eval = |extra: &[&str], file: &std::path::Path| -> serde_json::Value {
        let mut args = vec!["eval", "--json"];
        args.extend(extra);
        args.push(file.to_str().unwrap());
        let o = actprm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let subset = |r: &serde_json::Value| r["subsets"]["bigbench_mistake_sample"].clone();
    let (off, min) = (
        subset(&eval(&["--check", "off"], &bbm)),
        subset(&eval(&["--check", "min"], &bbm)),
    );
    let acc = |r: &serde_json::Value| r["acc_error"].as_f64().unwrap();
    assert!(
        acc(&min) > acc(&off),
        "acc_error with the check {min}, without {off}"
    );
    assert_eq!(
        subset(&eval(&[], &bbm)),
        min,
        "the default model joins the check"
    );

    let recs = actprm::source::jsonl::read_labelled(&bbm).unwrap();
    let parquet = dir.path().join("bbm.parquet");
    write_parquet(&parquet, &actprm::source::jsonl::to_record_batch(&recs));
    let store = |name: &str, check: &str| {
        let features = dir.path().join(format!("{name}.arrow"));
        let o = actprm(&[
            "score",
            "-i",
            parquet.to_str().unwrap(),
            "-o",
            dir.path().join(name).to_str().unwrap(),
            "--check",
            check,
            "--features",
            features.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        features
    };
    let checked = store("bigbench_mistake_sample", "min");
    let features = eval(&[], &checked);
    assert_eq!(
        subset(&features)["acc_error"],
        min["acc_error"],
        "{features}"
    );
    assert_eq!(subset(&features)["f1"], min["f1"], "{features}");
    assert_eq!(
        subset(&eval(&["--check", "off"], &checked))["f1"],
        off["f1"]
    );

    let unchecked = store("unchecked", "off");
    let o = actprm(&["eval", "--json", unchecked.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("unchecked.arrow: row 0") && err.contains("no arithmetic-check verdict"),
        "{err}"
    );
    let o = actprm(&[
        "eval",
        "--json",
        "--check",
        "off",
        unchecked.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn eval_takes_the_scoring_batch_options_and_they_change_no_number() {
    let pb = data("pb_subset.json");
    let run = |extra: &[&str]| {
        let mut args = vec!["eval", "--json", pb.to_str().unwrap()];
        args.extend(extra);
        actprm(&args)
    };
    let default = run(&[]);
    assert!(default.status.success(), "{}", stderr(&default));
    // the documented GPU command's flags, at small sizes: other batches, the same metrics
    let small = run(&[
        "--token-budget",
        "256",
        "--max-batch",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(small.status.success(), "{}", stderr(&small));
    let metrics = |o: &std::process::Output| {
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        r["subsets"]["pb_subset"].clone()
    };
    let (a, b) = (metrics(&default), metrics(&small));
    assert!(a["n"].as_u64().unwrap() > 0, "{a}");
    for key in ["n", "f1", "acc_error", "acc_correct"] {
        assert_eq!(a[key], b[key], "{key}: {a} vs {b}");
    }
    let o = run(&["--max-batch", "0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("max_batch (--max-batch) must be at least 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_eval_shows_the_last_step_baseline() {
    for file in ["prm800k_test_sample.jsonl", "bigbench_mistake_sample.jsonl"] {
        let path = data(file);
        let o = actprm(&["eval", "--json", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let name = file.trim_end_matches(".jsonl");
        let b = &r["subsets"][name]["last_step_baseline"];
        // computed from the records themselves: how often the error is the last step
        let rows = records(file);
        let wrong: Vec<_> = rows.iter().filter(|t| t.label.unwrap() >= 0).collect();
        let at_end = wrong
            .iter()
            .filter(|t| t.label.unwrap() as usize == t.steps.len() - 1)
            .count();
        assert_eq!(b["n"], rows.len(), "{file}: {b}");
        let expected = at_end as f64 / wrong.len() as f64;
        assert!(
            (b["acc_error"].as_f64().unwrap() - expected).abs() < 1e-12,
            "{file}: {b} vs {expected}"
        );
        if wrong.len() < rows.len() {
            assert_eq!(b["acc_correct"], 0.0, "{file}: it never predicts -1");
        }
        let table = actprm(&["eval", path.to_str().unwrap()]);
        assert!(
            String::from_utf8_lossy(&table.stdout).contains("last-step baseline"),
            "{}",
            String::from_utf8_lossy(&table.stdout)
        );
    }
}

/// AUROC by counting every (wrong step, correct step) pair, ties half: the definition, not the
/// rank formula `eval` uses.
fn pairwise_auroc(steps: &[(f64, bool)]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (w, _) in steps.iter().filter(|(_, wrong)| *wrong) {
        for (r, _) in steps.iter().filter(|(_, wrong)| !*wrong) {
            pairs += 1.0;
            wins += if w > r {
                1.0
            } else if w == r {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

#[test]
fn eval_step_auroc_agrees_with_pair_counting_over_score_output() {
    use arrow::array::AsArray;
    use arrow::datatypes::Float32Type;
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("scored");
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = records("prm800k_test_sample.jsonl");
    let mut by_model = Vec::new();
    let mut by_position = Vec::new();
    let mut row = 0;
    for batch in read_parquet_dir(&out, "part-") {
        let means = batch.column_by_name("step_mean").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            let mean = means.value(i);
            let mean = mean.as_primitive::<Float32Type>();
            let label = rows[row].label.unwrap();
            let labelled = if label < 0 {
                mean.len()
            } else {
                label as usize + 1
            };
            for k in 0..labelled {
                let wrong = label == k as i32;
                by_model.push((1.0 - f64::from(mean.value(k)), wrong));
                by_position.push((f64::from(u8::from(k + 1 == mean.len())), wrong));
            }
            row += 1;
        }
    }
    assert_eq!(row, rows.len());
    let path = data("prm800k_test_sample.jsonl");
    let o = actprm(&["eval", "--json", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let subset = &r["subsets"]["prm800k_test_sample"];
    let got = subset["step_auroc"].as_f64().unwrap();
    let want = pairwise_auroc(&by_model);
    assert!(
        (got - want).abs() < 1e-9,
        "step_auroc {got}, pair counting {want}"
    );
    let got = subset["last_step_auroc"].as_f64().unwrap();
    let want = pairwise_auroc(&by_position);
    assert!(
        (got - want).abs() < 1e-9,
        "last_step_auroc {got}, pair counting {want}"
    );
    // PRM800K's trajectories stop at their first error: position alone ranks almost perfectly
    assert!(got > 0.9, "last_step_auroc {got}");
}
