#!/usr/bin/env bash
# One-command check of imported PRMs on a GPU machine (run by hand, or by the device tool):
# builds actprm, imports every tiny fixture of tests/data/hf, scores their reference examples on
# CUDA and on the CPU, and compares both with the Python reference (golden.json); then prints the
# scorer's tokens/s on CUDA for the imported Qwen fixture, and the fixture in f16 and int8 on CUDA. Also the embedded default on CUDA (its
# f32 graph with ONNX Runtime's fused kernels) against the same graph on the CPU. Needs ./setup.sh run with ACTPRM_GPU=1
# (onnxruntime-gpu) on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/actprm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
g = json.load(open("tests/data/hf/golden.json"))["fixtures"]["qwen-prm"]["examples"]
with open(sys.argv[1] + "/examples.jsonl", "w") as f:
    for e in g:
        f.write(json.dumps({"id": e["id"], "problem": e["problem"], "steps": e["steps"]}) + "\n")
PY
"$bin" convert "$work/examples.jsonl" -o "$work/examples.parquet" >/dev/null
for fixture in qwen-prm qwen-prm-sharded qwen-prm-bf16 actprm skywork math-shepherd rlhflow; do
  "$bin" import --from "tests/data/hf/$fixture" -o "$work/$fixture" >/dev/null
  for device in cpu cuda; do
    "$bin" score -i "$work/examples.parquet" -o "$work/$fixture-$device" --model "$work/$fixture" \
      --device "$device" >/dev/null
    "$bin" sql --table s="$work/$fixture-$device" --format json \
      "select id, step_mean from s" >"$work/$fixture-$device.json"
  done
done
# the reduced precisions of the Qwen fixture on CUDA (f16: tensor cores; int8: MatMulNBits)
for dtype in f16 int8; do
  "$bin" import --from tests/data/hf/qwen-prm -o "$work/qwen-prm-$dtype" --dtype "$dtype" >/dev/null
  "$bin" score -i "$work/examples.parquet" -o "$work/qwen-prm-$dtype-cuda" \
    --model "$work/qwen-prm-$dtype" --device cuda >/dev/null
  "$bin" sql --table s="$work/qwen-prm-$dtype-cuda" --format json \
    "select id, step_mean from s" >"$work/qwen-prm-$dtype-cuda.json"
done
# the embedded default: CUDA runs its f32 graph (fused attention, skip-LayerNorm and BiasGelu
# kernels); the same graph on the CPU (a copy of the default pinned to f32) must agree with it
mkdir "$work/default-f32"
cp src/model/default/heads.onnx src/model/default/anchors.onnx "$work/default-f32/"
python3 -c 'import json,sys; m=json.load(open("src/model/default/manifest.json")); m["backbone_precision"]="f32"; json.dump(m, open(sys.argv[1], "w"))' \
  "$work/default-f32/manifest.json"
"$bin" score -i tests/data/prm800k_phase1_test.parquet -o "$work/default-cuda" --device cuda >/dev/null
"$bin" score -i tests/data/prm800k_phase1_test.parquet -o "$work/default-f32-cpu" --model "$work/default-f32" >/dev/null
for run in default-cuda default-f32-cpu; do
  "$bin" sql --table s="$work/$run" --format json "select id, step_mean from s" >"$work/$run.json"
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def means(run):
    return {r["id"]: r["step_mean"] for r in map(json.loads, open(f"{work}/{run}.json"))}
cuda, cpu = means("default-cuda"), means("default-f32-cpu")
diff = max(abs(a - b) for i in cpu for a, b in zip(cuda[i], cpu[i]))
print(f"{'default (f32)':18} cuda  max |p - cpu| = {diff:.1e} {'ok' if diff < 1e-3 else 'FAILED'}")
sys.exit(0 if diff < 1e-3 else 1)
PY
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
golden = json.load(open("tests/data/hf/golden.json"))["fixtures"]
failed = False
for fixture, spec in golden.items():
    ref = {e["id"]: e["step_probs"] for e in spec["examples"]}
    for device in ("cpu", "cuda"):
        got = {}
        for line in open(f"{work}/{fixture}-{device}.json"):
            row = json.loads(line)
            got[row["id"]] = row["step_mean"]
        diff = max(abs(a - b) for i in ref for a, b in zip(got[i], ref[i]))
        ok = diff < 1e-3 if device == "cuda" else diff < 1e-4
        failed |= not ok
        print(f"{fixture:18} {device:5} max |p - reference| = {diff:.1e} {'ok' if ok else 'FAILED'}")
ref = {e["id"]: e["step_probs"] for e in golden["qwen-prm"]["examples"]}
for dtype, bound in (("f16", 1e-2), ("int8", 5e-2)):  # the CPU test's bounds (tests/import.rs)
    got = {}
    for line in open(f"{work}/qwen-prm-{dtype}-cuda.json"):
        row = json.loads(line)
        got[row["id"]] = row["step_mean"]
    diff = max(abs(a - b) for i in ref for a, b in zip(got[i], ref[i]))
    failed |= diff >= bound
    print(f"{'qwen-prm ' + dtype:18} cuda  max |p - reference| = {diff:.1e} {'ok' if diff < bound else 'FAILED'}")
sys.exit(1 if failed else 0)
PY
ACTPRM_BENCH_MODEL="$work/qwen-prm" ACTPRM_BENCH_DEVICE=cuda cargo bench --bench pipeline 2>/dev/null | tail -4
