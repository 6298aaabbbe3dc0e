//! Algorithm 1 is written once (`train::algorithm::label_and_train`) and run by both the streaming
//! loop and the pool-based experiment: its budget, notes and one-step-per-batch rule, and the
//! experiment driving it end to end.

mod common;

use std::path::Path;

use actprm::formats::features::FeatureRow;
use actprm::label::{LabelOutcome, LabelRequest, Labeller};
use actprm::model::HeadsWeights;
use actprm::train::algorithm::label_and_train;
use actprm::train::{TrainConfig, Trainer};
use common::{actprm, prm800k_parquet, stderr, tiny_model};

/// Labels a row with its stored label when the label is even, refuses it otherwise.
struct EvenOnly {
    asked: Vec<String>,
}

impl Labeller for EvenOnly {
    fn label(&mut self, requests: &[LabelRequest]) -> Vec<LabelOutcome> {
        requests
            .iter()
            .map(|r| {
                self.asked.push(r.key.clone());
                match r.pool_label {
                    Some(l) if l % 2 == 0 => LabelOutcome::Labelled { first_error: l },
                    _ => LabelOutcome::Unlabelled {
                        reason: "odd".into(),
                        raw: None,
                    },
                }
            })
            .collect()
    }
    fn name(&self) -> String {
        "even".into()
    }
}

fn rows(labels: &[i32], dim: usize) -> Vec<FeatureRow> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| FeatureRow {
            source_file: "f".into(),
            source_row: i as u64,
            label: Some(l),
            features: (0..3 * dim)
                .map(|k| ((i * 7 + k) % 11) as f32 / 11.0)
                .collect(),
            steps: 3,
        })
        .collect()
}

#[test]
fn chosen_rows_are_labelled_within_the_budget_and_trained_on_once() {
    let dim = 8;
    let w = HeadsWeights::init(2, dim, 0);
    let mut trainer = Trainer::new(&w, &w, TrainConfig::default(), tch::Device::Cpu).unwrap();
    let batch = rows(&[0, 1, 2, -1, 2, 0], dim);
    let chosen = [true, true, false, true, true, true];
    let mut labeller = EvenOnly { asked: Vec::new() };
    let request = |i: usize| LabelRequest {
        key: format!("row{i}"),
        problem: String::new(),
        steps: vec![String::new(); 3],
        pool_label: batch[i].label,
    };
    let out = label_and_train(&mut trainer, &mut labeller, &batch, &chosen, 3, request).unwrap();
    // the first three chosen rows are asked, in order; the other two are over budget
    assert_eq!(labeller.asked, ["row0", "row1", "row3"]);
    assert_eq!(out.labels, [Some(0), None, None, None, None, None]);
    assert_eq!(
        out.notes,
        [
            "labelled by even",
            "unlabelled: odd",
            "not selected",
            "unlabelled: odd",
            "over budget",
            "over budget"
        ]
    );
    assert_eq!((out.over_budget, out.unlabelled, out.labelled()), (2, 2, 1));
    assert_eq!(trainer.step(), 1, "one optimiser step for the batch");

    // nothing labelled: no step
    let out = label_and_train(
        &mut trainer,
        &mut labeller,
        &batch,
        &[false; 6],
        10,
        request,
    )
    .unwrap();
    assert!(out.step.is_none() && out.labels.iter().all(Option::is_none));
    assert_eq!(trainer.step(), 1);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_experiment_runs_the_loops_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let pool = dir.path().join("pool.arrow");
    let o = actprm(&[
        "score",
        "-i",
        s(&prm800k_parquet(dir.path())),
        "-o",
        s(&dir.path().join("scored")),
        "--model",
        s(&model),
        "--features",
        s(&pool),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("experiment");
    let o = actprm(&[
        "experiment",
        "--pool",
        s(&pool),
        "--dev",
        s(&pool),
        "-o",
        s(&out),
        "--strategies",
        "actprm@50%,full",
        "--seeds",
        "0",
        "--heads",
        "2",
        "--stream-batch",
        "4",
        "--export-every",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let streamed = report["pool_streamed"].as_u64().unwrap();
    assert!(streamed >= 8, "{report}");
    let last = |strategy: &str| {
        report["curves"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["strategy"] == strategy)
            .and_then(|c| c["points"].as_array().unwrap().last().cloned())
            .unwrap()
    };
    // full labels every streamed row, one optimiser step per batch of 4
    let full = last("full");
    assert_eq!(full["labels"], streamed, "{full}");
    assert_eq!(full["steps"], streamed.div_ceil(4), "{full}");
    // actprm@50% labels round(n / 2) of each batch
    let batches: Vec<u64> = (0..streamed)
        .step_by(4)
        .map(|start| (streamed - start).min(4))
        .collect();
    let half: u64 = batches
        .iter()
        .map(|&n| (n as f64 * 0.5).round() as u64)
        .sum();
    let actprm = last("actprm@50%");
    assert_eq!(actprm["labels"], half, "{actprm}");
    assert!(out.join("curve.svg").is_file() && out.join("table.md").is_file());
}
