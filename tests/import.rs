//! `actprm import` against the families' own Python code: tiny random checkpoints of each PRM
//! family (`tests/data/hf`, built by `tools/hf-reference/make_fixtures.py` with transformers)
//! and the token ids and step probabilities the reference code computed for real problems.
//! Nothing here compares actprm with its own earlier output.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actprm::model::backbone::BackboneInput;
use actprm::model::LoadedModel;
use actprm::source::jsonl::{to_record_batch, LabelledTrajectory};
use actprm::tokenise::Tokeniser;
use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use common::{actprm, read_parquet_dir, stderr, write_parquet};

/// The fixtures `import` reads, by folder.
const FIXTURES: [&str; 7] = [
    "qwen-prm",
    "qwen-prm-sharded",
    "qwen-prm-bf16",
    "actprm",
    "skywork",
    "math-shepherd",
    "rlhflow",
];

fn hf(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hf")
        .join(name)
}

fn golden(fixture: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(hf("golden.json")).expect("golden.json");
    let all: serde_json::Value = serde_json::from_str(&text).expect("json");
    all["fixtures"][fixture].clone()
}

fn examples(fixture: &str) -> Vec<serde_json::Value> {
    golden(fixture)["examples"]
        .as_array()
        .expect("examples")
        .clone()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The reference examples as a Parquet file in the standard layout (with their labels).
fn examples_parquet(dir: &Path, fixture: &str) -> PathBuf {
    let rows: Vec<LabelledTrajectory> = examples(fixture)
        .iter()
        .map(|e| LabelledTrajectory {
            id: e["id"].as_str().map(str::to_string),
            problem: e["problem"].as_str().expect("problem").to_string(),
            steps: strings(&e["steps"]),
            label: e["label"].as_i64().map(|l| l as i32),
            error_steps: None,
        })
        .collect();
    let path = dir.join(format!("{fixture}.parquet"));
    write_parquet(&path, &to_record_batch(&rows));
    path
}

/// `actprm import --from FROM -o OUT --dtype DTYPE --json`, as it ended.
fn run_import(from: &Path, out: &Path, dtype: &str) -> std::process::Output {
    actprm(&[
        "import",
        "--from",
        from.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dtype",
        dtype,
        "--json",
    ])
}

fn import(fixture: &str, out: &Path) -> serde_json::Value {
    let o = run_import(&hf(fixture), out, "f32");
    assert!(o.status.success(), "{fixture}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("import report is JSON")
}

/// `id -> step_mean` of a score output folder.
fn step_means(dir: &Path) -> HashMap<String, Vec<f32>> {
    let mut out = HashMap::new();
    for batch in read_parquet_dir(dir, "part-") {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let means = batch
            .column_by_name("step_mean")
            .expect("step_mean")
            .as_list::<i32>();
        for i in 0..batch.num_rows() {
            let v = means.value(i);
            let v = v.as_primitive::<Float32Type>();
            out.insert(ids.value(i).to_string(), v.values().to_vec());
        }
    }
    out
}

/// `actprm score` of `fixture`'s reference examples with `model` into `dir/scored-MODEL`, as it
/// ended, and that folder.
fn run_score_examples(dir: &Path, fixture: &str, model: &Path) -> (std::process::Output, PathBuf) {
    let input = examples_parquet(dir, fixture);
    let name = model.file_name().unwrap().to_string_lossy();
    let scored = dir.join(format!("scored-{name}"));
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    (o, scored)
}

/// `actprm score` of `fixture`'s reference examples with `model`: `id -> step_mean`.
fn score_examples(dir: &Path, fixture: &str, model: &Path) -> HashMap<String, Vec<f32>> {
    let (o, scored) = run_score_examples(dir, fixture, model);
    assert!(o.status.success(), "{fixture}: {}", stderr(&o));
    step_means(&scored)
}

#[test]
fn every_family_scores_each_step_as_its_reference_code_does() {
    let dir = tempfile::tempdir().unwrap();
    let expected_family = [
        ("qwen-prm", "qwen-prm", 1),
        ("qwen-prm-sharded", "qwen-prm", 1),
        ("qwen-prm-bf16", "qwen-prm", 1),
        ("actprm", "actprm", 4),
        ("skywork", "skywork", 1),
        ("math-shepherd", "token-head", 1),
        ("rlhflow", "token-head", 1),
    ];
    for (fixture, family, heads) in expected_family {
        let model = dir.path().join(format!("model-{fixture}"));
        let report = import(fixture, &model);
        assert_eq!(report["family"], family, "{fixture}: detected family");
        assert_eq!(report["ensemble_size"], heads, "{fixture}");
        // the batch cap by attention size counts the checkpoint's query heads
        let json = |path: PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        assert_eq!(
            json(model.join("manifest.json"))["attention_heads"],
            json(hf(fixture).join("config.json"))["num_attention_heads"],
            "{fixture}"
        );
        let got = score_examples(dir.path(), fixture, &model);
        let reference = examples(fixture);
        assert_eq!(
            got.len(),
            reference.len(),
            "{fixture}: every example scored"
        );
        for e in reference {
            let id = e["id"].as_str().unwrap();
            let want = floats(&e["step_probs"]);
            let have = &got[id];
            assert_eq!(have.len(), want.len(), "{fixture} {id}: one score per step");
            for (step, (h, w)) in have.iter().zip(&want).enumerate() {
                assert!(
                    (*h as f64 - w).abs() < 1e-4,
                    "{fixture} {id} step {step}: actprm {h}, reference {w}"
                );
            }
        }
    }
}

#[test]
fn prompts_tokenise_to_the_reference_ids_and_marker_positions() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in FIXTURES {
        let model_dir = dir.path().join(fixture);
        import(fixture, &model_dir);
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(model_dir.join("manifest.json")).unwrap(),
        )
        .unwrap();
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/model-manifest.schema.json"),
            )
            .unwrap(),
        )
        .unwrap();
        for key in manifest.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "{fixture}: manifest key {key} is not in the schema"
            );
        }
        for key in manifest["prompt"].as_object().unwrap().keys() {
            assert!(
                schema["properties"]["prompt"]["properties"]
                    .get(key)
                    .is_some(),
                "{fixture}: prompt key {key} is not in the schema"
            );
        }
        let model = LoadedModel::from_dir(&model_dir).expect("model opens");
        let tokeniser = Tokeniser::for_model(&model).expect("tokenizer");
        for e in examples(fixture) {
            let steps = strings(&e["steps"]);
            let problem = e["problem"].as_str().unwrap();
            let t = tokeniser
                .encode(&[(problem, steps.as_slice())])
                .expect("encodes")
                .remove(0);
            assert_eq!(t.windows.len(), 1, "{fixture}: fits one window");
            let markers: Vec<usize> = e["marker_positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap() as usize)
                .collect();
            let ids: Vec<i64> = e["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect();
            // a causal model's step scores depend on the tokens up to the last marker only; the
            // reference's text may go on (Qwen's closing `<|im_end|>`)
            let last = *markers.last().unwrap();
            assert_eq!(
                t.windows[0].separators, markers,
                "{fixture}: marker positions"
            );
            assert_eq!(t.windows[0].ids, ids[..=last], "{fixture}: token ids");
        }
    }
}

#[test]
fn imported_actprm_heads_train_on_and_keep_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("actprm");
    import("actprm", &model);
    let input = examples_parquet(dir.path(), "actprm");
    let features = dir.path().join("features.arrow");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("scored").to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trained = dir.path().join("trained");
    let o = actprm(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "-o",
        trained.to_str().unwrap(),
        "--epochs",
        "3",
        "--warmup",
        "1",
        "--batch-size",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(model.join("heads.onnx")).unwrap();
    let after = std::fs::read(trained.join("heads.onnx")).unwrap();
    assert_ne!(before, after, "training changed the imported heads");
    let o = actprm(&[
        "score",
        "-i",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("rescored").to_str().unwrap(),
        "--model",
        trained.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(step_means(&dir.path().join("rescored")).len(), 4);
}

#[test]
fn folders_it_cannot_import_get_errors_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let run = |from: &Path, format: &str| {
        actprm(&[
            "import",
            "--from",
            from.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--format",
            format,
        ])
    };
    // no weights
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(hf("qwen-prm/config.json"), empty.join("config.json")).unwrap();
    let o = run(&empty, "auto");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.safetensors"), "{}", stderr(&o));
    // the wrong family names the tensor it looked for
    let o = run(&hf("qwen-prm"), "skywork");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("v_head.summary.weight"),
        "{}",
        stderr(&o)
    );
    // a truncated shard is refused, never read past its end
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(hf("qwen-prm").join(f), broken.join(f)).unwrap();
    }
    let weights = std::fs::read(hf("qwen-prm/model.safetensors")).unwrap();
    std::fs::write(
        broken.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let o = run(&broken, "auto");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside the file"), "{}", stderr(&o));
    // architectures it does not build say what they have
    let gelu = dir.path().join("gelu");
    std::fs::create_dir_all(&gelu).unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(hf("qwen-prm").join(f), gelu.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(hf("qwen-prm/config.json"))
        .unwrap()
        .replace("\"silu\"", "\"gelu\"");
    std::fs::write(gelu.join("config.json"), config).unwrap();
    let o = run(&gelu, "auto");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hidden_act \"gelu\""), "{}", stderr(&o));
    assert!(!out.exists(), "a failed import leaves no model directory");
}

#[test]
fn a_padded_batch_scores_as_one_row_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    // rows of different lengths in one backbone call: right padding and the causal mask must
    // leave every real token as it is alone
    for fixture in ["qwen-prm", "rlhflow"] {
        let model = dir.path().join(fixture);
        import(fixture, &model);
        let input = examples_parquet(dir.path(), fixture);
        let run = |name: &str, max_batch: &str| {
            let out = dir.path().join(format!("{fixture}-{name}"));
            let o = actprm(&[
                "score",
                "-i",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--token-budget",
                "100000",
                "--max-batch",
                max_batch,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            step_means(&out)
        };
        let together = run("batch", "32");
        let alone = run("alone", "1");
        assert_eq!(together.len(), 4);
        assert_eq!(
            alone.len(),
            together.len(),
            "{fixture}: every example scored alone"
        );
        for (id, a) in &alone {
            let t = &together[id];
            assert_eq!(
                a.len(),
                t.len(),
                "{fixture} {id}: one score per step either way"
            );
            for (x, y) in a.iter().zip(t) {
                assert!(
                    (x - y).abs() < 1e-5,
                    "{fixture} {id}: alone {x}, in a batch {y}"
                );
            }
        }
    }
}

#[test]
fn eval_reads_processbench_files_with_an_imported_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("skywork");
    import("skywork", &model);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pb_subset.json");
    let o = actprm(&[
        "eval",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        report["subsets"]["pb_subset"]["n"],
        records.len(),
        "every record evaluated: {report}"
    );
    assert!(report["model_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("skywork@")));
}

/// The default backbone written by actprm from its fp32 weights (`setup.sh` fetches them) against
/// transformers' BertModel (`tests/data/hf/minilm_golden.json`): f32 to 1e-4, and the int8 graph
/// (per-channel s8 weights) close in direction; the three windows also as one padded batch.
/// A window read as one prompt (every token in step 0): the graph attends as plain BERT does.
fn whole<'a>(ids: &'a [i64], positions: &'a [usize]) -> BackboneInput<'a> {
    BackboneInput {
        ids,
        separators: positions,
        prefix: ids.len(),
    }
}

#[test]
fn the_default_backbone_written_from_fp32_weights_matches_transformers() {
    let weights = actprm::model::deps_dir().join("models/minilm-fp32");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf("minilm_golden.json")).unwrap()).unwrap();
    let windows = golden["windows"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // f16 is written for decoders only
    let o = run_import(&weights, &dir.path().join("f16"), "f16");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("f16 is written for decoders"),
        "{}",
        stderr(&o)
    );
    for dtype in ["f32", "int8", "int8-rows"] {
        let model_dir = dir.path().join(dtype);
        let o = run_import(&weights, &model_dir, dtype);
        assert!(o.status.success(), "{}", stderr(&o));
        let model = LoadedModel::from_dir(&model_dir).unwrap();
        let mut backbone =
            actprm::model::Backbone::open(&model, &Default::default()).expect("backbone opens");
        let ids: Vec<Vec<i64>> = windows
            .iter()
            .map(|w| {
                w["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect()
            })
            .collect();
        // positions 0..4 and the last of each window
        let positions: Vec<Vec<usize>> =
            ids.iter().map(|w| vec![0, 1, 2, 3, w.len() - 1]).collect();
        let expected: Vec<Vec<f32>> = windows
            .iter()
            .map(|w| {
                let mut rows: Vec<f32> = Vec::new();
                for r in w["hidden"]["first4"].as_array().unwrap() {
                    rows.extend(floats(r).iter().map(|&v| v as f32));
                }
                rows.extend(floats(&w["hidden"]["last"]).iter().map(|&v| v as f32));
                rows
            })
            .collect();
        let alone: Vec<Vec<f32>> = ids
            .iter()
            .zip(&positions)
            .map(|(w, p)| backbone.separator_features(&[whole(w, p)]).unwrap())
            .collect();
        let inputs: Vec<BackboneInput> = ids
            .iter()
            .zip(&positions)
            .map(|(w, p)| whole(w, p))
            .collect();
        let batched = backbone.separator_features(&inputs).unwrap();
        let flat: Vec<f32> = alone.concat();
        let cosine = |g: &[f32], e: &[f32]| {
            assert_eq!(g.len(), e.len());
            let dot: f32 = g.iter().zip(e).map(|(a, b)| a * b).sum();
            let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
            dot / (norm(g) * norm(e))
        };
        let max_diff = |g: &[f32], e: &[f32]| {
            assert_eq!(g.len(), e.len());
            g.iter()
                .zip(e)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        assert_eq!(
            flat.len(),
            5 * 384 * windows.len(),
            "{dtype}: 5 vectors per window"
        );
        assert_eq!(
            batched.len(),
            flat.len(),
            "{dtype}: a batch as many vectors as alone"
        );
        for (a, b) in flat.chunks(384).zip(batched.chunks(384)) {
            if dtype == "int8" {
                // one activation scale per call: the rows of a batch change each other's
                // quantisation (measured: cosine 0.977 at worst)
                let c = cosine(a, b);
                assert!(c > 0.97, "int8: batch vs alone cosine {c}");
            } else {
                let diff = max_diff(a, b);
                assert!(
                    diff < 1e-4,
                    "{dtype}: a padded batch differs from alone by {diff}"
                );
            }
        }
        assert_eq!(alone.len(), expected.len());
        for (w, (got, want)) in alone.iter().zip(&expected).enumerate() {
            assert_eq!(got.len(), want.len(), "{dtype}: window {w}: vectors");
            for (v, (g, e)) in got.chunks(384).zip(want.chunks(384)).enumerate() {
                match dtype {
                    "f32" => {
                        let diff = max_diff(g, e);
                        assert!(diff < 1e-4, "window {w} vector {v}: max diff {diff}");
                    }
                    _ => {
                        let floor = if dtype == "int8" { 0.97 } else { 0.99 };
                        let c = cosine(g, e);
                        assert!(c > floor, "{dtype}: window {w} vector {v}: cosine {c}");
                    }
                }
            }
        }
    }
}

/// Decoders take `--dtype int8` (8-bit weights, f32 activations: MatMulNBits) and `--dtype f16`
/// (f16 weights and activations, norms and softmax in f32): each within a small distance of the
/// reference's step probabilities, with a smaller backbone file. `--dtype int8-rows` (per-token
/// int8 activations, which moved the reference fixtures' step probabilities by up to 0.5 when it
/// was tried) is refused with the reason.
#[test]
fn decoders_take_int8_weights_and_f16_and_refuse_int8_activations() {
    let dir = tempfile::tempdir().unwrap();
    let backbone_bytes = |m: &Path| {
        ["backbone.onnx", "backbone.onnx.data"]
            .iter()
            .filter_map(|f| std::fs::metadata(m.join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    for fixture in ["qwen-prm", "actprm", "skywork"] {
        let f32_model = dir.path().join(format!("{fixture}-f32"));
        import(fixture, &f32_model);
        // (dtype, the largest share of f32's file size, the largest step difference): the
        // embeddings stay f32 in int8, so its file shrinks by less than its dense layers do;
        // random tiny weights amplify rounding (measured: int8 0.005-0.022, f16 0.0003-0.003)
        for (dtype, size_share, tolerance) in [("int8", 0.8, 0.05), ("f16", 0.55, 0.01)] {
            let model = dir.path().join(format!("{fixture}-{dtype}"));
            let o = run_import(&hf(fixture), &model, dtype);
            assert!(o.status.success(), "{fixture} {dtype}: {}", stderr(&o));
            let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(report["dense"], dtype);
            let (size, full) = (backbone_bytes(&model), backbone_bytes(&f32_model));
            assert!(
                (size as f64) < size_share * full as f64,
                "{fixture} {dtype}: {size} bytes, f32 {full}"
            );
            let got = score_examples(dir.path(), fixture, &model);
            let mut worst = 0f64;
            for e in examples(fixture) {
                let want = floats(&e["step_probs"]);
                let have = &got[e["id"].as_str().unwrap()];
                assert_eq!(have.len(), want.len());
                for (h, w) in have.iter().zip(&want) {
                    worst = worst.max((*h as f64 - w).abs());
                }
            }
            eprintln!("{fixture} {dtype}: largest step difference {worst:.5}");
            assert!(
                worst < tolerance,
                "{fixture} {dtype}: a step moved by {worst}"
            );
        }
    }
    let o = run_import(&hf("qwen-prm"), &dir.path().join("m"), "int8-rows");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("int8-rows quantises activations"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("m").exists(), "nothing written");
}

/// `tensor` of the safetensors file at `path` (F32) set to `value` everywhere, in place.
fn fill_f32_tensor(path: &Path, tensor: &str, value: f32) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[tensor]["dtype"], "F32", "{tensor}");
    let offsets = floats(&header[tensor]["data_offsets"]);
    let (start, end) = (
        8 + header_len + offsets[0] as usize,
        8 + header_len + offsets[1] as usize,
    );
    for chunk in bytes[start..end].chunks_exact_mut(4) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A checkpoint whose hidden state overflows (here its final norm scaled past f32's range, as a
/// Qwen2.5 checkpoint's residual stream can overflow f16) fails the run with the reason and the
/// way out, instead of writing NaN scores.
#[test]
fn a_backbone_that_overflows_fails_with_the_reason_not_nan_scores() {
    let dir = tempfile::tempdir().unwrap();
    let from = common::fixture_copy("qwen-prm", &dir.path().join("from"));
    fill_f32_tensor(&from.join("model.safetensors"), "model.norm.weight", 3e38);
    let model = dir.path().join("model");
    let o = run_import(&from, &model, "f32");
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, _) = run_score_examples(dir.path(), "qwen-prm", &model);
    assert!(!o.status.success(), "NaN scores were written");
    assert!(
        stderr(&o).contains("the model overflowed") && stderr(&o).contains("--dtype f32"),
        "{}",
        stderr(&o)
    );
}
