//! Pipeline files run `train`, `finetune` and `experiment` as stages (`fit`, `finetune`,
//! `experiment`) through the commands' own functions: a file and the command line with the same
//! non-default settings give the same model or results, so a key the file ignored would show;
//! misplaced stages are refused at their line.

use std::path::Path;

use crate::common::{actprm, data, prm800k_features, prm800k_parquet, stderr, tiny_model};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Step features of the PRM800K sample under the tiny model, and the model.
fn features(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = tiny_model(dir);
    let features = prm800k_features(dir, Some(&model));
    (model, features)
}

fn run_file(dir: &Path, text: &str) -> std::process::Output {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, text).unwrap();
    actprm(&["run", "-q", path(&file)])
}

fn heads(model: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(model.join("heads.onnx")).unwrap();
    actprm::model::HeadsWeights::from_onnx(&bytes)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.to_vec())
        .collect()
}

fn assert_same_heads(a: &Path, b: &Path) {
    let (a, b) = (heads(a), heads(b));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "heads differ by {diff}");
    }
}

#[test]
fn a_fit_stage_trains_as_the_train_command_with_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (model, features) = features(dir.path());
    let by_command = dir.path().join("by-command");
    let o = actprm(&[
        "train",
        "-q",
        "--features",
        path(&features),
        "-o",
        path(&by_command),
        "--model",
        path(&model),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.004",
        "--warmup",
        "2",
        "--weight-decay",
        "0.1",
        "--wrong-weight",
        "3",
        "--seed",
        "5",
        "--heads",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let by_file = dir.path().join("by-file");
    let text = format!(
        "sources:\n  pool: {{type: features, paths: [{features}]}}\n\
         transforms:\n  heads:\n    type: fit\n    inputs: [pool]\n    output: {out}\n    \
         model: {model}\n    epochs: 3\n    batch_size: 8\n    lr: 0.004\n    warmup: 2\n    \
         weight_decay: 0.1\n    wrong_weight: 3\n    seed: 5\n    heads: 3\n\
         sinks:\n  report: {{type: table, inputs: [heads], json: true}}\n",
        features = path(&features),
        out = path(&by_file),
        model = path(&model),
    );
    let o = run_file(dir.path(), &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 24 labelled trajectories in batches of 8, three epochs
    assert_eq!(report["steps"], 9, "{report}");
    assert_same_heads(&by_command, &by_file);

    // the keys matter: the recipe's learning rate trains other heads
    let default_lr = dir.path().join("default-lr");
    let o = run_file(
        dir.path(),
        &text
            .replace("    lr: 0.004\n", "")
            .replace(path(&by_file), path(&default_lr)),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(heads(&by_file), heads(&default_lr));
}

#[test]
fn a_finetune_stage_tunes_as_the_finetune_command() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("prm800k_test_sample.jsonl");
    let by_command = dir.path().join("by-command");
    let o = actprm(&[
        "finetune",
        "-q",
        path(&input),
        "-o",
        path(&by_command),
        "--backbone-layers",
        "1",
        "--batch-size",
        "6",
        "--lr",
        "0.003",
        "--seed",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let by_file = dir.path().join("by-file");
    let text = format!(
        "sources:\n  labelled: {{type: jsonl, paths: [{input}]}}\n\
         transforms:\n  tune:\n    type: finetune\n    inputs: [labelled]\n    output: {out}\n    \
         backbone_layers: 1\n    batch_size: 6\n    lr: 0.003\n    seed: 2\n\
         sinks:\n  report: {{type: table, inputs: [tune], json: true}}\n",
        input = path(&input),
        out = path(&by_file),
    );
    let o = run_file(dir.path(), &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["steps"], 4, "{report}");
    assert_same_heads(&by_command, &by_file);
}

#[test]
fn an_experiment_stage_reports_as_the_experiment_command() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pool) = features(dir.path());
    let by_command = dir.path().join("by-command");
    let o = actprm(&[
        "experiment",
        "--pool",
        path(&pool),
        "--dev",
        path(&pool),
        "-o",
        path(&by_command),
        "--strategies",
        "actprm@50%,full",
        "--seeds",
        "1,4",
        "--heads",
        "2",
        "--stream-batch",
        "4",
        "--retrain-steps",
        "3",
        "--lr",
        "0.01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let by_file = dir.path().join("by-file");
    let text = format!(
        "sources:\n  pool: {{type: features, paths: [{pool}]}}\n\
         transforms:\n  compare:\n    type: experiment\n    inputs: [pool]\n    dev: [{pool}]\n    \
         output: {out}\n    strategies: [actprm@50%, full]\n    seeds: [1, 4]\n    heads: 2\n    \
         stream_batch: 4\n    retrain_steps: 3\n    lr: 0.01\n\
         sinks:\n  report: {{type: table, inputs: [compare]}}\n",
        pool = path(&pool),
        out = path(&by_file),
    );
    let o = run_file(dir.path(), &text);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("results.json"));
    let results = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("results.json")).unwrap()).unwrap()
    };
    let (a, b) = (results(&by_command), results(&by_file));
    assert_eq!(a["curves"].as_array().map(Vec::len), Some(4), "{a}");
    assert_eq!(a, b);
}

#[test]
fn misplaced_offline_stages_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = prm800k_parquet(dir.path());
    let check = |text: &str| {
        let file = dir.path().join("check.yaml");
        std::fs::write(&file, text).unwrap();
        let o = actprm(&["validate", "--skip-env", path(&file)]);
        assert!(!o.status.success(), "accepted:\n{text}");
        stderr(&o)
    };
    let source = format!(
        "sources:\n  pool: {{type: parquet, paths: [{}]}}\n",
        path(&parquet)
    );
    let features = "sources:\n  pool: {type: features, paths: [pool.arrow]}\n";
    // fit reads step features, not trajectories
    let err = check(&format!(
        "{source}transforms:\n  heads: {{type: fit, inputs: [pool], output: m}}\n\
         sinks:\n  t: {{type: table, inputs: [heads]}}\n"
    ));
    assert!(
        err.contains(":4:") && err.contains("reads step features"),
        "{err}"
    );
    // a scorer cannot read step features
    let err = check(&format!(
        "{features}transforms:\n  s: {{type: score, inputs: [pool]}}\n\
         sinks:\n  t: {{type: table, inputs: [s]}}\n"
    ));
    assert!(err.contains("cannot read `pool` (features)"), "{err}");
    // fit writes a model, not rows
    let err = check(&format!(
        "{features}transforms:\n  heads: {{type: fit, inputs: [pool], output: m}}\n\
         sinks:\n  rows: {{type: parquet, inputs: [heads], path: out}}\n"
    ));
    assert!(
        err.contains(":6:") && err.contains("sinks after fit: table"),
        "{err}"
    );
    // a key of the loop is no key of fit, and ranges are the flags'
    let err = check(&format!(
        "{features}transforms:\n  heads: {{type: fit, inputs: [pool], output: m, export_every: 3, epochs: 0}}\n\
         sinks:\n  t: {{type: table, inputs: [heads]}}\n"
    ));
    assert!(err.contains("export_every"), "{err}");
    assert!(err.contains("epochs"), "{err}");
    // what the flags' parser refuses (--resume with --heads) is refused for keys too
    let err = check(&format!(
        "{features}transforms:\n  heads: {{type: fit, inputs: [pool], output: m, resume: m, heads: 4}}\n\
         sinks:\n  t: {{type: table, inputs: [heads]}}\n"
    ));
    assert!(
        err.contains("`resume`") && err.contains("neither heads nor model"),
        "{err}"
    );
    // with the environment checked: a development set that is not there, at its key
    let (_, pool) = self::features(dir.path());
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:\n  pool: {{type: features, paths: [{}]}}\ntransforms:\n  \
             compare:\n    type: experiment\n    inputs: [pool]\n    dev: [{}]\n    \
             output: {}\nsinks:\n  t: {{type: table, inputs: [compare]}}\n",
            path(&pool),
            path(&dir.path().join("missing.arrow")),
            path(&dir.path().join("results"))
        ),
    )
    .unwrap();
    let o = actprm(&["validate", path(&file)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(":7:") && stderr(&o).contains("missing.arrow does not exist"),
        "{}",
        stderr(&o)
    );
    // finetune reads labelled trajectories
    let err = check(&format!(
        "{features}transforms:\n  tune: {{type: finetune, inputs: [pool], output: m}}\n\
         sinks:\n  t: {{type: table, inputs: [tune]}}\n"
    ));
    assert!(err.contains("not step features"), "{err}");
}

#[test]
fn the_shipped_finetune_pipeline_writes_a_model_that_scores() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_actprm"))
        .current_dir(root)
        .args(["run", "-q", "pipelines/finetune.yaml"])
        .env("OUT", &out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    // 24 records, every 4th held out: 18 in batches of 4
    assert!(table.contains("fine-tuned 5 steps on 18"), "{table}");
    assert!(table.contains("chosen on 6 held-out"), "{table}");
    let scored = dir.path().join("scored");
    let o = actprm(&[
        "score",
        "-q",
        "-i",
        path(&prm800k_parquet(dir.path())),
        "-o",
        path(&scored),
        "--model",
        path(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(crate::common::summary(&scored)["rows_scored"], 24);
}
