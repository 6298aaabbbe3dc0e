//! Issue 35: a step's score depends on the problem and the steps up to it only. Scoring a
//! trajectory cut after step k must give its first k steps the scores they have in the whole
//! trajectory: for the embedded default (step-causal encoder), in windows too, and for an
//! imported decoder PRM (causal by construction). A bidirectional encoder fails the same check,
//! so the check can fail.
use crate::common;

use std::path::Path;

use actprm::model::backbone::BackboneInput;
use actprm::model::manifest::{Attention, BackbonePrecision};
use actprm::model::{Backbone, LoadedModel};
use actprm::score::{ScoreOptions, StepScorer};
use actprm::tokenise::Tokeniser;
use actprm::train::encoder::TchEncoder;
use arrow::array::{Array, AsArray};
use common::*;

/// Largest allowed change of a step's mean probability. The graphs compute the same products
/// for a prefix, but padding lengths change the kernels' summation order, and the int8-rows
/// graph quantises each token's activations (measured: 3e-8, windows 0); the leak this
/// guards against moved scores by up to 0.66.
const TOLERANCE: f32 = 1e-5;

/// `(id, problem, steps)` of every row of the sample files shipped in `tests/data`.
fn shipped_rows() -> Vec<(String, String, Vec<String>)> {
    let mut rows = Vec::new();
    for name in [
        "prm800k_test_sample.jsonl",
        "bigbench_mistake_sample.jsonl",
        "mr_gsm8k_sample.jsonl",
    ] {
        for (i, r) in records(name).into_iter().enumerate() {
            rows.push((format!("{name}:{}", i + 1), r.problem, r.steps));
        }
    }
    // the quick start's input, every row
    let file = std::fs::File::open(data("prm800k_phase1_test.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut row = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let problems = batch.column_by_name("problem").unwrap().as_string::<i32>();
        let steps = batch.column_by_name("steps").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            row += 1;
            let list = steps.value(i);
            let list = list.as_string::<i32>();
            let steps = (0..list.len()).map(|j| list.value(j).to_string()).collect();
            rows.push((
                format!("prm800k_phase1_test.parquet:{row}"),
                problems.value(i).to_string(),
                steps,
            ));
        }
    }
    rows
}

/// The largest change of any step's mean when the steps after it are cut off (cuts after the
/// first step, the middle one and the one before last), with the row, cut and step it is at.
fn largest_prefix_change(
    model: &LoadedModel,
    rows: &[(String, String, Vec<String>)],
) -> (f32, String) {
    let tokeniser = Tokeniser::for_model(model).unwrap();
    let mut scorer = StepScorer::open(model, &Default::default(), ScoreOptions::default()).unwrap();
    let mut worst = (0f32, String::from("none"));
    for chunk in rows.chunks(16) {
        // each row whole, then its cuts
        let mut items: Vec<(usize, usize)> = Vec::new();
        for (r, (_, _, steps)) in chunk.iter().enumerate() {
            let n = steps.len();
            items.push((r, n));
            let mut cuts = vec![1, n / 2, n.saturating_sub(1)];
            cuts.retain(|&k| k >= 1 && k < n);
            cuts.dedup();
            items.extend(cuts.into_iter().map(|k| (r, k)));
        }
        let refs: Vec<(&str, &[String])> = items
            .iter()
            .map(|&(r, k)| (chunk[r].1.as_str(), &chunk[r].2[..k]))
            .collect();
        let tokenised = tokeniser.encode(&refs).unwrap();
        let (scores, _) = scorer.score(&tokenised).unwrap();
        let mut whole = 0;
        for (i, &(r, k)) in items.iter().enumerate() {
            if k == chunk[r].2.len() {
                whole = i;
                continue;
            }
            for step in 0..k {
                let change = (scores[i].mean[step] - scores[whole].mean[step]).abs();
                if change > worst.0 {
                    worst = (
                        change,
                        format!("{}, cut after step {k}, step {}", chunk[r].0, step + 1),
                    );
                }
            }
        }
    }
    worst
}

#[test]
fn the_default_scores_each_step_from_its_prefix_only() {
    let model = LoadedModel::embedded().unwrap();
    assert_eq!(model.manifest.attention, Some(Attention::StepCausal));
    let rows = shipped_rows();
    assert!(rows.len() > 350, "{} rows", rows.len());
    let (change, at) = largest_prefix_change(&model, &rows);
    eprintln!("largest change {change} ({at})");
    assert!(
        change <= TOLERANCE,
        "cutting later steps changed a score by {change} ({at})"
    );
}

#[test]
fn windows_keep_the_prefix_property() {
    let mut model = LoadedModel::embedded().unwrap();
    // short windows: most rows of the sample span several
    model.manifest.max_length = 96;
    model.manifest.max_problem_tokens = 40;
    let rows: Vec<_> = shipped_rows().into_iter().take(60).collect();
    let tokeniser = Tokeniser::for_model(&model).unwrap();
    let refs: Vec<(&str, &[String])> = rows
        .iter()
        .map(|(_, p, s)| (p.as_str(), s.as_slice()))
        .collect();
    let windowed = tokeniser
        .encode(&refs)
        .unwrap()
        .iter()
        .filter(|t| t.windowed())
        .count();
    assert!(windowed > 30, "only {windowed} rows are windowed");
    let (change, at) = largest_prefix_change(&model, &rows);
    eprintln!("largest change {change} ({at})");
    assert!(
        change <= TOLERANCE,
        "cutting later steps changed a windowed score by {change} ({at})"
    );
}

/// The control: the same backbone with plain (bidirectional) attention, as the default was
/// before issue 35, lets later steps move earlier scores far beyond the tolerance.
#[test]
fn a_bidirectional_encoder_fails_the_same_check() {
    let mut model = LoadedModel::embedded().unwrap();
    model.manifest.attention = Some(Attention::Bidirectional);
    // its own build beside the weights, unpinned
    let template = model
        .backbone_path
        .to_string_lossy()
        .replace("backbone-v3-", "backbone-bidirectional-test-");
    model.backbone_path = template.into();
    model.manifest.backbone_builds.clear();
    let rows: Vec<_> = shipped_rows().into_iter().take(30).collect();
    let (change, at) = largest_prefix_change(&model, &rows);
    eprintln!("largest change {change} ({at})");
    assert!(change > 0.05, "largest change {change} ({at})");
}

/// Decoder PRMs attend causally by construction: an imported one passes the check as it is.
#[test]
fn an_imported_decoder_prm_scores_each_step_from_its_prefix_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qwen");
    let o = actprm(&[
        "import",
        "--from",
        data("hf/qwen-prm").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = LoadedModel::from_dir(Path::new(&out)).unwrap();
    assert_eq!(model.manifest.attention, Some(Attention::Causal));
    let rows: Vec<_> = shipped_rows().into_iter().take(40).collect();
    let (change, at) = largest_prefix_change(&model, &rows);
    eprintln!("largest change {change} ({at})");
    assert!(
        change <= 1e-4,
        "cutting later steps changed a score by {change} ({at})"
    );
}

/// `tests/data/hf/minilm_step_causal_golden.json` (`tools/hf-reference/step_causal_golden.py`):
/// transformers' BertModel with a 3-D mask of the same rule, ids built in Python.
struct Golden {
    ids: Vec<Vec<i64>>,
    separators: Vec<Vec<usize>>,
    prefix: Vec<usize>,
    features: Vec<f32>,
}

fn golden() -> Golden {
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data("hf/minilm_step_causal_golden.json")).unwrap(),
    )
    .unwrap();
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let mut golden = Golden {
        ids: Vec::new(),
        separators: Vec::new(),
        prefix: Vec::new(),
        features: Vec::new(),
    };
    for w in g["windows"].as_array().unwrap() {
        golden.ids.push(ints(&w["input_ids"]));
        golden
            .separators
            .push(ints(&w["separators"]).iter().map(|&p| p as usize).collect());
        golden.prefix.push(w["prefix"].as_u64().unwrap() as usize);
        for f in w["features"].as_array().unwrap() {
            golden.features.extend(
                f.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32),
            );
        }
    }
    golden
}

impl Golden {
    fn inputs(&self) -> Vec<BackboneInput<'_>> {
        (0..self.ids.len())
            .map(|i| BackboneInput {
                ids: &self.ids[i],
                separators: &self.separators[i],
                prefix: self.prefix[i],
            })
            .collect()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_step_causal_graph_matches_transformers_with_the_same_mask() {
    let golden = golden();
    let mut model = LoadedModel::embedded().unwrap();
    model.manifest.backbone_precision = Some(BackbonePrecision::F32);
    let mut backbone = Backbone::open(&model, &Default::default()).unwrap();
    let inputs = golden.inputs();
    let batched = backbone.separator_features(&inputs).unwrap();
    let diff = max_diff(&batched, &golden.features);
    assert!(diff < 1e-4, "f32 graph, padded batch: max diff {diff}");
    let alone: Vec<f32> = inputs
        .iter()
        .flat_map(|w| backbone.separator_features(&[*w]).unwrap())
        .collect();
    let diff = max_diff(&alone, &golden.features);
    assert!(
        diff < 1e-4,
        "f32 graph, one window at a time: max diff {diff}"
    );
    // the CPU default's int8-rows graph keeps the direction
    let mut backbone =
        Backbone::open(&LoadedModel::embedded().unwrap(), &Default::default()).unwrap();
    let int8 = backbone.separator_features(&inputs).unwrap();
    for (g, e) in int8.chunks(384).zip(golden.features.chunks(384)) {
        let dot: f32 = g.iter().zip(e).map(|(a, b)| a * b).sum();
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cosine = dot / (norm(g) * norm(e));
        assert!(cosine > 0.99, "int8-rows vs transformers: cosine {cosine}");
    }
}

/// `finetune` trains through the same mask: the libtorch encoder matches the reference too.
#[test]
fn the_trainable_encoder_uses_the_same_mask() {
    let golden = golden();
    let weights = actprm::model::deps_dir().join("models/minilm-fp32");
    let encoder = TchEncoder::open(&weights, 6, tch::Device::Cpu, true).unwrap();
    let got = tch::no_grad(|| encoder.separator_features(&golden.inputs(), false));
    let got = Vec::<f32>::try_from(&got.reshape([-1])).unwrap();
    let diff = max_diff(&got, &golden.features);
    assert!(diff < 1e-4, "tch encoder: max diff {diff}");
    let plain = TchEncoder::open(&weights, 6, tch::Device::Cpu, false).unwrap();
    let got = tch::no_grad(|| plain.separator_features(&golden.inputs(), false));
    let got = Vec::<f32>::try_from(&got.reshape([-1])).unwrap();
    assert!(
        max_diff(&got, &golden.features) > 0.05,
        "the mask changes nothing?"
    );
}
