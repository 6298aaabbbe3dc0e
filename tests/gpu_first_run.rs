//! The GPU first-run script (`tools/gpu-first-run.sh`, issue 33 item 4), dry-run on the CPU
//! (`DEV=cpu`) with small sizes: every step runs and is recorded with its status, the parity
//! table holds every fixture family against the transformers golden file, the speed table a
//! tokens/s for sharing on and off, and the node placements come from ONNX Runtime's own log.

use std::path::Path;
use std::process::Command;

fn table(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn the_gpu_first_run_script_runs_every_step_on_the_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(root.join("tools/gpu-first-run.sh"))
        .arg(out.path())
        .env("DEV", "cpu")
        .env("BIN", env!("CARGO_BIN_EXE_actprm"))
        .env("LAYERS", "1")
        .env("BUDGETS", "1024")
        .env("ROWS", "8")
        .env("STEP_TIMEOUT", "300")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "the script never fails: {log}");
    let steps = table(&out.path().join("steps.tsv"));
    let names: Vec<&str> = steps.iter().map(|s| s[0].as_str()).collect();
    for expected in [
        "machine",
        "load",
        "default",
        "parity-qwen-prm-f32",
        "parity-rlhflow-f32",
        "parity-qwen-prm-int8",
        "speed-0.5b",
        "train",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    for s in &steps {
        assert_eq!(s[1], "ok", "step {} on the CPU: {log}", s[0]);
    }
    let parity = table(&out.path().join("parity.tsv"));
    // 7 families in f32, the Qwen fixture in f16 and int8, each within its bound
    assert_eq!(parity.len(), 1 + 9, "{parity:?}");
    for row in &parity[1..] {
        let (diff, bound): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
        assert!(diff < bound && row[5] == "ok", "{row:?}");
    }
    let speed = table(&out.path().join("speed.tsv"));
    assert_eq!(speed.len(), 1 + 2, "{speed:?}");
    for row in &speed[1..] {
        let tokens_per_s: f64 = row[8].parse().unwrap();
        assert!(tokens_per_s > 0.0, "{row:?}");
    }
    // sharing computes fewer positions than it reads (the sample's rows share problems)
    let computed = |sharing: &str| -> (u64, u64) {
        let row = speed[1..].iter().find(|r| r[4] == sharing).unwrap();
        (row[5].parse().unwrap(), row[6].parse().unwrap())
    };
    let (on, off) = (computed("on"), computed("off"));
    assert_eq!(on.0, off.0);
    assert_eq!(off.1, off.0);
    assert!(on.1 < on.0, "{on:?}");
    let placement = std::fs::read_to_string(out.path().join("placement.txt")).unwrap();
    assert!(
        placement.contains("All nodes placed on [CPUExecutionProvider]"),
        "{placement}"
    );
}
