//! The machine-readable files in `schemas/` must describe what the code really reads and writes.
//! Regenerate after a deliberate change with `ACTPRM_UPDATE_SCHEMAS=1 cargo test --test integration schema`
//! (which rewrites stale files and fails), then rerun without the variable.

use crate::common;

use std::path::Path;

use actprm::score::output::describe;
use serde_json::{json, Value};

fn check(file: &str, generated: Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(file);
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    // Update mode writes the new file and still fails when it changed: a run with the variable
    // set can never pass by comparing a file with itself.
    if std::env::var_os("ACTPRM_UPDATE_SCHEMAS").is_some() && on_disk != text {
        std::fs::write(&path, &text).unwrap();
        panic!(
            "{} was stale and has been rewritten: review the diff, then rerun without ACTPRM_UPDATE_SCHEMAS",
            path.display()
        );
    }
    assert_eq!(
        on_disk,
        text,
        "{} is stale: rerun with ACTPRM_UPDATE_SCHEMAS=1",
        path.display()
    );
}

#[test]
fn scored_output_schema_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::prm800k_parquet(dir.path());
    let mut job =
        actprm::pipeline::ScoreJob::new(vec![input.display().to_string()], dir.path().join("out"));
    job.with_head_probs = true;
    actprm::pipeline::run_score(&job, Default::default()).unwrap();
    let batch = &common::read_parquet_dir(&dir.path().join("out"), "part-")[0];
    let columns = describe(&batch.schema());
    let input_columns = 4;
    let score_columns: Vec<Value> = columns.as_array().unwrap()[input_columns..].to_vec();
    check(
        "scored-output.schema.json",
        json!({
            "title": "actprm scored output (Parquet parts written by `actprm score`)",
            "input_columns": "every input column first, unchanged (score columns replace same-named input columns)",
            "optional": ["step_head_probs (with --head-probs): list over steps of the E per-head probabilities"],
            "score_columns": score_columns,
        }),
    );
}

#[test]
fn step_feature_schema_is_current() {
    check(
        "step-features.schema.json",
        json!({
            "title": "actprm step features (Arrow IPC file written by `actprm score --features`, read by `actprm train`)",
            "dimension": "D = the backbone's hidden size (384 for the default model)",
            "columns": describe(&actprm::formats::features::schema(384)),
        }),
    );
}

#[test]
fn trajectory_input_schema_is_current() {
    use actprm::source::columns::{PROBLEM_CANDIDATES, STEPS_CANDIDATES};
    let text = [
        "utf8",
        "large_utf8",
        "utf8_view",
        "binary (must hold UTF-8; invalid rows are rejected)",
        "large_binary",
        "binary_view",
    ];
    check(
        "trajectory-input.schema.json",
        json!({
            "title": "actprm trajectory input (Parquet)",
            "columns": [
                {"role": "problem", "names_tried": PROBLEM_CANDIDATES, "flag": "--problem-column", "types": text, "nullable": "null rows are rejected"},
                {"role": "steps", "names_tried": STEPS_CANDIDATES, "flag": "--steps-column", "types": text.map(|t| format!("list<{t}>")), "nullable": "null or empty lists and empty steps are rejected"},
                {"role": "label (optional)", "names_tried": ["label", "ratings", "hard_labels", "labels"], "types": ["integer: first wrong step (0-based), -1 = all correct", "list<integer>: PRM800K ratings per step, +1 good / 0 neutral / -1 bad; the first -1 is the first error (a null before it leaves the row unlabelled)", "list<integer>: hard labels 1 = correct, 0 = wrong", "list<bool> or list<integer>: TRL stepwise supervision, true (1) = correct; the first false is the first error"]}
            ],
            "other_columns": "carried through unchanged",
        }),
    );
}

#[test]
fn the_embedded_manifest_follows_the_manifest_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/model-manifest.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let manifest =
        serde_json::to_value(&actprm::model::LoadedModel::embedded().unwrap().manifest).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for key in manifest.as_object().unwrap().keys() {
        assert!(
            props.contains_key(key),
            "manifest key {key} is not documented in the schema"
        );
    }
    for key in schema["required"].as_array().unwrap() {
        assert!(
            manifest.get(key.as_str().unwrap()).is_some(),
            "required key {key} missing"
        );
    }
}
