//! Backbone fine-tuning: the trainable encoder (tch) against transformers' BertModel, training
//! that moves only the layers it should, and an export whose backbone graphs (written by actprm
//! from the fine-tuned weights, pinned) reproduce the tch encoder in ONNX Runtime.

use crate::common;

use actprm::model::backbone::BackboneInput;
use actprm::model::manifest::BackbonePrecision;
use actprm::model::{Backbone, LoadedModel};
use actprm::tokenise::Tokeniser;
use actprm::train::encoder::TchEncoder;
use actprm::train::{Finetuner, TokenisedExample, TrainConfig};
use common::*;
use tch::{Device, Tensor};

fn minilm_weights() -> std::path::PathBuf {
    actprm::model::deps_dir().join("models/minilm-fp32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.reshape([-1])).unwrap()
}

/// A window read as one prompt (every token in step 0): attention as plain BERT's.
fn whole<'a>(ids: &'a [i64], positions: &'a [usize]) -> BackboneInput<'a> {
    BackboneInput {
        ids,
        separators: positions,
        prefix: ids.len(),
    }
}

/// `tests/data/hf/minilm_golden.json` holds transformers' hidden states of three windows
/// (positions 0..4 and the last): the encoder matches them alone and in one padded batch.
#[test]
fn the_trainable_encoder_matches_transformers() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("hf/minilm_golden.json")).unwrap())
            .unwrap();
    let encoder = TchEncoder::open(&minilm_weights(), 6, Device::Cpu, true).unwrap();
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for w in golden["windows"].as_array().unwrap() {
        let window: Vec<i64> = w["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let mut rows: Vec<f32> = Vec::new();
        let hidden = &w["hidden"];
        for r in hidden["first4"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&hidden["last"]])
        {
            rows.extend(
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32),
            );
        }
        ids.push(window);
        expected.push(rows);
    }
    let positions: Vec<Vec<usize>> = ids.iter().map(|w| vec![0, 1, 2, 3, w.len() - 1]).collect();
    let mut alone = Vec::new();
    for ((w, p), want) in ids.iter().zip(&positions).zip(&expected) {
        let got = to_vec(&tch::no_grad(|| {
            encoder.separator_features(&[whole(w, p)], false)
        }));
        let diff = max_diff(&got, want);
        assert!(diff < 1e-4, "alone: max diff {diff} from transformers");
        alone.extend(got);
    }
    let windows: Vec<BackboneInput> = ids
        .iter()
        .zip(&positions)
        .map(|(w, p)| whole(w, p))
        .collect();
    let batched = to_vec(&tch::no_grad(|| {
        encoder.separator_features(&windows, false)
    }));
    let diff = max_diff(&batched, &alone);
    assert!(diff < 1e-4, "a padded batch differs from alone by {diff}");
}

fn examples(model: &LoadedModel) -> Vec<TokenisedExample> {
    let recs = records("prm800k_test_sample.jsonl");
    let refs: Vec<(&str, &[String])> = recs
        .iter()
        .map(|r| (r.problem.as_str(), r.steps.as_slice()))
        .collect();
    Tokeniser::for_model(model)
        .unwrap()
        .encode(&refs)
        .unwrap()
        .into_iter()
        .zip(&recs)
        .map(|(trajectory, r)| TokenisedExample {
            trajectory,
            label: r.label.unwrap(),
        })
        .collect()
}

#[test]
fn finetuning_moves_the_top_layer_and_exports_a_backbone_onnx_runtime_reproduces() {
    let base = LoadedModel::embedded().unwrap();
    let examples = examples(&base);
    let batch: Vec<&TokenisedExample> = examples.iter().take(4).collect();
    let config = TrainConfig {
        lr: 3e-3,
        warmup_steps: 0,
        batch_size: 4,
        threads: 2,
        ..TrainConfig::default()
    };
    let mut tuner = Finetuner::new(&base, &minilm_weights(), 1, config, 3e-4, Device::Cpu).unwrap();
    let before = tuner.step_features(&batch).unwrap();
    let first = tuner.train_step(&batch).unwrap();
    let mut last = first;
    for _ in 0..9 {
        last = tuner.train_step(&batch).unwrap();
    }
    assert_eq!(last.step, 10);
    assert!(
        last.bce < 0.8 * first.bce,
        "fitting one batch: bce {} -> {}",
        first.bce,
        last.bce
    );
    let after = tuner.step_features(&batch).unwrap();
    assert!(
        max_diff(&before, &after) > 1e-3,
        "the top layer learned nothing"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let version = tuner.export(&base, &out, Some(0.4), "test").unwrap();
    let model = LoadedModel::from_dir(&out).unwrap();
    assert_eq!(model.version(), version);
    assert_eq!(model.manifest.tau, 0.4);
    assert_eq!(model.manifest.backbone, "backbone-{precision}.onnx");
    assert_eq!(
        model.manifest.backbone_builds.keys().collect::<Vec<_>>(),
        ["f32", "int8-rows"]
    );

    // only the top layer's tensors changed in the saved weights
    let original: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(minilm_weights().join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let mut changed = Vec::new();
    for (name, tensor) in Tensor::read_safetensors(out.join("model.safetensors")).unwrap() {
        if tensor.is_floating_point() && !tensor.equal(&original[&name]) {
            changed.push(name);
        }
    }
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|n| n.starts_with("encoder.layer.5.")),
        "frozen tensors changed: {changed:?}"
    );

    // ONNX Runtime on the f32 graph written from the tuned weights gives the tch features
    let windows: Vec<BackboneInput> = batch
        .iter()
        .flat_map(|e| e.trajectory.windows.iter())
        .map(|w| w.input())
        .collect();
    let mut f32_model = model.clone();
    f32_model.manifest.backbone_precision = Some(BackbonePrecision::F32);
    let mut backbone = Backbone::open(&f32_model, &Default::default()).unwrap();
    let ort = backbone.separator_features(&windows).unwrap();
    let diff = max_diff(&ort, &after);
    assert!(diff < 2e-4, "ORT f32 graph vs tch: max diff {diff}");
    // the CPU default (int8-rows) opens with its pin and stays close in direction
    let mut backbone = Backbone::open(&model, &Default::default()).unwrap();
    let int8 = backbone.separator_features(&windows).unwrap();
    assert_eq!(int8.len(), after.len(), "int8-rows: as many vectors as tch");
    for (g, e) in int8.chunks(384).zip(after.chunks(384)) {
        let dot: f32 = g.iter().zip(e).map(|(a, b)| a * b).sum();
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cosine = dot / (norm(g) * norm(e));
        assert!(cosine > 0.99, "int8-rows vs tch: cosine {cosine}");
    }
}

#[test]
fn the_finetune_command_writes_a_model_that_scores_and_refuses_fixed_backbones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let input = data("prm800k_test_sample.jsonl");
    let o = actprm(&[
        "finetune",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--backbone-layers",
        "1",
        "--batch-size",
        "4",
        "--tau-holdout-every",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("held-out trajectories"), "{table}");
    let model = LoadedModel::from_dir(&out).unwrap();
    assert!(
        model.manifest.name.ends_with("-ft"),
        "{}",
        model.manifest.name
    );
    assert!(
        model.manifest.provenance.contains("top 1 encoder layers"),
        "{}",
        model.manifest.provenance
    );
    let parquet = prm800k_parquet(dir.path());
    let scored = dir.path().join("scored");
    let o = actprm(&[
        "score",
        "-i",
        parquet.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--model",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&scored)["rows_scored"], 24, "{}", summary(&scored));

    // a model whose backbone is a fixed ONNX file has no weights to fine-tune
    let tiny = tiny_model(dir.path());
    let o = actprm(&[
        "finetune",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("never").to_str().unwrap(),
        "--model",
        tiny.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("fine-tuning needs a backbone actprm writes from fp32 weights"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("never").exists());
}

#[test]
fn an_interrupted_finetune_resumes_to_the_weights_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("prm800k_test_sample.jsonl");
    // 24 records in batches of 4, two epochs: 12 steps
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "finetune",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--backbone-layers",
            "1",
            "--batch-size",
            "4",
            "--epochs",
            "2",
            "--checkpoint-every",
            "4",
        ];
        args.extend(extra);
        actprm(&args)
    };
    let whole = dir.path().join("whole");
    let o = run(&whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.path().join("whole.checkpoint").exists());

    let resumed = dir.path().join("resumed");
    let checkpoint = dir.path().join("resumed.checkpoint");
    let o = run(&resumed, &["--stop-after", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("stopped after 6 steps"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!resumed.exists() && checkpoint.exists());
    // a fresh start would silently throw the checkpoint away; other settings would mix runs
    let o = run(&resumed, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("holds a previous run"),
        "{}",
        stderr(&o)
    );
    let o = run(&resumed, &["--resume", "--lr", "0.002"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("checkpoint of a fine-tuning run with other inputs or settings"),
        "{}",
        stderr(&o)
    );
    // each difference is named as the flag it is
    assert!(
        stderr(&o).contains("--lr: 0.001 -> 0.002"),
        "{}",
        stderr(&o)
    );
    let o = run(&resumed, &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(resumed.exists() && !checkpoint.exists());

    let heads = |d: &std::path::Path| {
        actprm::model::HeadsWeights::from_onnx(&std::fs::read(d.join("heads.onnx")).unwrap())
            .unwrap()
    };
    let (a, b) = (heads(&whole), heads(&resumed));
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert!(max_diff(x, y) <= 1e-6, "heads differ by {}", max_diff(x, y));
    }
    let weights = |d: &std::path::Path| -> std::collections::BTreeMap<String, Tensor> {
        Tensor::read_safetensors(d.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect()
    };
    let (tensors_whole, tensors_resumed) = (weights(&whole), weights(&resumed));
    assert_eq!(tensors_whole.len(), tensors_resumed.len());
    let changed = tensors_whole
        .iter()
        .filter(|(n, x)| {
            x.is_floating_point() && !x.allclose(&tensors_resumed[*n], 0.0, 1e-6, false)
        })
        .map(|(n, _)| n)
        .collect::<Vec<_>>();
    assert!(changed.is_empty(), "encoder tensors differ: {changed:?}");
    let o = run(&resumed, &["--resume"]);
    assert!(
        stderr(&o).contains("no checkpoint to resume"),
        "{}",
        stderr(&o)
    );
}
