//! Issue 32: decoder PRMs score each shared prefix once. Scoring the real PRM800K test file (353
//! trajectories of 57 problems, ordered by problem) with prefix sharing on gives the scores it
//! gives with each window on its own, for every imported decoder family and precision, while
//! computing far fewer backbone positions; the reference comparison against transformers
//! (tests/import.rs) runs with sharing on, its default.

use crate::common;

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `(id, step_mean, first_error)` of each scored row, and the summary.
type Scored = (Vec<(String, Vec<f32>, i32)>, serde_json::Value);

fn score(model: &Path, out: &Path, sharing: &str) -> Scored {
    score_with(model, out, &["--prefix-sharing", sharing])
}

fn score_with(model: &Path, out: &Path, flags: &[&str]) -> Scored {
    let input = data("prm800k_phase1_test.parquet");
    let mut args = vec![
        "score",
        "-q",
        "-i",
        s(&input),
        "-o",
        s(out),
        "--model",
        s(model),
    ];
    args.extend(flags);
    let o = actprm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = Vec::new();
    for b in read_parquet_dir(out, "part-") {
        let ids = b.column_by_name("id").unwrap().as_string::<i32>();
        let means = b.column_by_name("step_mean").unwrap().as_list::<i32>();
        let first = b
            .column_by_name("first_error")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        for i in 0..b.num_rows() {
            let m = means.value(i);
            rows.push((
                ids.value(i).to_string(),
                m.as_primitive::<Float32Type>().values().to_vec(),
                first.value(i),
            ));
        }
    }
    (rows, summary(out))
}

#[test]
fn shared_prefixes_give_the_scores_of_windows_scored_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, dtype, tolerance) in [
        ("qwen-prm", "f32", 1e-4),
        ("qwen-prm", "f16", 1e-3),
        ("qwen-prm", "int8", 1e-4),
        ("rlhflow", "f32", 1e-4),
        ("math-shepherd", "f32", 1e-4),
        ("actprm", "f32", 1e-4),
        ("skywork", "f32", 1e-4),
    ] {
        let name = format!("{fixture}-{dtype}");
        let model = dir.path().join(&name);
        let o = actprm(&[
            "import",
            "--from",
            s(&data(&format!("hf/{fixture}"))),
            "-o",
            s(&model),
            "--dtype",
            dtype,
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let (shared, on) = score(&model, &dir.path().join(format!("{name}-on")), "on");
        let (alone, off) = score(&model, &dir.path().join(format!("{name}-off")), "off");
        assert_eq!(shared.len(), 353, "{name}");
        assert_eq!(on["tokens"], off["tokens"], "{name}");
        assert_eq!(off["tokens_computed"], off["tokens"], "{name}");
        let (computed, tokens) = (
            on["tokens_computed"].as_u64().unwrap(),
            on["tokens"].as_u64().unwrap(),
        );
        assert!(
            (computed as f64) < 0.8 * tokens as f64,
            "{name}: {computed} of {tokens} tokens computed"
        );
        let mut worst = 0f32;
        for ((id, a, first_a), (id_b, b, first_b)) in shared.iter().zip(&alone) {
            assert_eq!(id, id_b);
            assert_eq!(a.len(), b.len(), "{name} {id}");
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
            if tolerance < 1e-3 {
                assert_eq!(first_a, first_b, "{name} {id}");
            }
        }
        assert!(
            worst <= tolerance,
            "{name}: largest step_mean change {worst}"
        );
        eprintln!("{name}: {computed} of {tokens} tokens computed, largest change {worst:e}");
    }
}

#[test]
fn the_default_model_scores_each_window_alone_and_says_so() {
    // the default backbone is step-causal (a step sees its own tokens both ways), not causal:
    // nothing is shared, and the summary shows every token computed
    let dir = tempfile::tempdir().unwrap();
    let input = prm800k_parquet(dir.path());
    let out = dir.path().join("out");
    let o = actprm(&["score", "-q", "-i", s(&input), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = summary(&out);
    assert_eq!(summary["tokens_computed"], summary["tokens"]);
}

/// `--share-window`: prefixes that read-batch boundaries split (a problem's samples in two
/// batches) are computed once when consecutive batches are scored together, with the same scores
/// as each batch alone and the rows in input order.
#[test]
fn a_share_window_computes_prefixes_across_read_batches_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("qwen-prm");
    let o = actprm(&["import", "--from", s(&data("hf/qwen-prm")), "-o", s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |name: &str, window: &str| {
        score_with(
            &model,
            &dir.path().join(name),
            &["--batch-rows", "3", "--share-window", window],
        )
    };
    let (batch_alone, alone) = run("alone", "0");
    let (windowed, shared) = run("window", "48");
    assert_eq!(windowed.len(), 353);
    let computed = |summary: &serde_json::Value| summary["tokens_computed"].as_u64().unwrap();
    assert_eq!(shared["tokens"], alone["tokens"]);
    assert!(
        (computed(&shared) as f64) < 0.8 * computed(&alone) as f64,
        "{} of {} computed",
        computed(&shared),
        computed(&alone)
    );
    for ((id, a, first_a), (id_b, b, first_b)) in windowed.iter().zip(&batch_alone) {
        assert_eq!(id, id_b, "row order");
        assert_eq!(first_a, first_b, "{id}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4, "{id}: {x} vs {y}");
        }
    }
}
