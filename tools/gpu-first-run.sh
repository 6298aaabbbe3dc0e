#!/usr/bin/env bash
# The first run on a GPU machine (issue 33, item 4): one call that never aborts, logs every step
# with its time and exit status, and leaves everything in one folder, so its log decides what is
# left to do. It replaces tools/gpu-check.sh.
#
#   tools/gpu-first-run.sh [OUT]          # DEV=cuda (default)
#   DEV=cpu tools/gpu-first-run.sh OUT    # the same steps on the CPU: a dry run on any machine
#
# It runs a prebuilt binary (BIN; default target/release/actprm, else target/debug/actprm) and
# builds one only where cargo exists and none is there; the ONNX Runtime it loads is the one
# `ACTPRM_GPU=1 ./setup.sh` staged in .deps, which it runs first (step `setup`) only where that
# is missing and PyPI answers. Steps (OUT/steps.tsv: step,
# status, seconds; OUT/<step>.log: its output):
#   machine          nvidia-smi, CPU, memory, the staged libraries
#   load             the embedded model on DEV with ONNX Runtime's verbose log: the provider
#                    registers, and OUT/placement.txt lists which provider runs each graph's nodes
#   default          the embedded default's f32 graph (what CUDA runs) on DEV against the CPU
#   parity-*         every Hugging Face fixture family (f32) and the Qwen fixture in f16 and int8,
#                    imported and scored on DEV, against the transformers golden file
#                    (OUT/parity.tsv)
#   speed-*          random checkpoints of SIZES shapes (0.5b, 7b), imported (f16 on cuda), scored
#                    at each of BUDGETS tokens, prefix sharing on and off: tokens/s, tokens
#                    computed and peak GPU memory (OUT/speed.tsv); needs a python with numpy (PY)
#   train            one optimiser step of `actprm train --device DEV` on fresh features
# Knobs: SIZES (0.5b), BUDGETS (1024,16384), LAYERS (0: the shape's own), ROWS (64: rows per
# speed run), STEP_TIMEOUT (600 s), PY (default: .deps/python/bin/python, else python3).
set -u
set -a # every variable below is exported to the steps' child shells
cd "$(dirname "$0")/.."
root=$(pwd)
DEV=${DEV:-cuda}
OUT=${1:-gpu-first-run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SIZES=${SIZES:-0.5b}
BUDGETS=${BUDGETS:-1024,16384}
LAYERS=${LAYERS:-0}
ROWS=${ROWS:-64}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
work="$OUT/work"
mkdir -p "$work"
: >"$OUT/steps.tsv"
printf 'fixture\tdtype\tdevice\tmax_abs_diff\tbound\tresult\n' >"$OUT/parity.tsv"
printf 'shape\tlayers\tdtype\tbudget\tprefix_sharing\ttokens\ttokens_computed\tseconds\ttokens_per_s\tpeak_gpu_mib\tresult\n' >"$OUT/speed.tsv"

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/run.log"; }

# step NAME CMD...: runs CMD with a timeout, its output in OUT/NAME.log, one line in steps.tsv;
# a failure is recorded and the run goes on
step() {
  local name=$1
  shift
  local start=$SECONDS
  say "start $name"
  # a function runs in a child bash (timeout runs programs): functions and variables are exported
  timeout "$STEP_TIMEOUT" bash -c '"$@"' "$name" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local status=ok
  [ "$rc" -eq 0 ] || status="failed($rc)"
  [ "$rc" -eq 124 ] && status="timed-out"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >>"$OUT/steps.tsv"
  say "end   $name: $status in $((SECONDS - start)) s"
  return 0
}

skip() {
  printf '%s\tskipped: %s\t0\n' "$1" "$2" >>"$OUT/steps.tsv"
  say "skip  $1: $2"
}

BIN=${BIN:-}
if [ -z "$BIN" ]; then
  for candidate in target/release/actprm target/debug/actprm; do
    [ -x "$candidate" ] && BIN="$root/$candidate" && break
  done
fi
if [ -z "$BIN" ] && command -v cargo >/dev/null; then
  step build cargo build --release
  BIN="$root/target/release/actprm"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  skip binary "no actprm binary (set BIN, or build with cargo)"
  exit 0
fi
PY=${PY:-}
if [ -z "$PY" ]; then
  for candidate in .deps/python/bin/python python3; do
    command -v "$candidate" >/dev/null && PY=$candidate && break
  done
fi
say "DEV=$DEV BIN=$BIN PY=${PY:-none} OUT=$OUT"

machine() {
  command -v nvidia-smi >/dev/null && nvidia-smi || echo "no nvidia-smi"
  uname -a
  nproc
  free -g
  "$BIN" --version
  ls -l .deps .deps/ort-gpu/onnxruntime/capi 2>&1 | head -40
}
export -f machine
step machine machine

# where a registry answers and the CUDA build of ONNX Runtime is not staged yet, stage it
if [ "$DEV" != cpu ] && [ ! -d .deps/ort-gpu ]; then
  if timeout 10 python3 -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/', timeout=8)" 2>/dev/null; then
    step setup env ACTPRM_GPU=1 ./setup.sh
  else
    skip setup "no .deps/ort-gpu and no registry: stage it with ACTPRM_GPU=1 ./setup.sh elsewhere"
  fi
fi

input="$root/tests/data/prm800k_phase1_test.parquet"

load() {
  ACTPRM_ORT_LOG=verbose "$BIN" score -q -i "$input" -o "$work/load" --overwrite --device "$DEV"
}
export -f load
step load load
grep -h "VerifyEachNodeIsAssignedToAnEp\|nodes placed on\|were not assigned" "$OUT/load.log" \
  >"$OUT/placement.txt" 2>/dev/null

# id -> step_mean of a score output, as JSON Lines
means() { "$BIN" sql --table s="$1" --format json "select id, step_mean from s" >"$2"; }

default_model() {
  mkdir -p "$work/default-f32"
  cp src/model/default/heads.onnx src/model/default/anchors.onnx "$work/default-f32/" || return 1
  sed 's/"backbone_precision": *"[a-z0-9]*"/"backbone_precision": "f32"/' \
    src/model/default/manifest.json >"$work/default-f32/manifest.json" || return 1
  "$BIN" score -q -i "$input" -o "$work/default-dev" --overwrite --model "$work/default-f32" \
    --device "$DEV" || return 1
  "$BIN" score -q -i "$input" -o "$work/default-cpu" --overwrite --model "$work/default-f32" || return 1
  means "$work/default-dev" "$work/default-dev.json" && means "$work/default-cpu" "$work/default-cpu.json"
  compare_runs "$work/default-dev.json" "$work/default-cpu.json" 1e-3
}

# compare_runs A B BOUND: the largest |step_mean| difference over the ids of B
compare_runs() {
  "$PY" - "$@" <<'PY'
import json, sys
a, b, bound = sys.argv[1], sys.argv[2], float(sys.argv[3])
load = lambda p: {r["id"]: r["step_mean"] for r in map(json.loads, open(p))}
x, y = load(a), load(b)
diff = max(abs(p - q) for i in y for p, q in zip(x[i], y[i]))
print(f"max |difference| = {diff:.2e} (bound {bound:.0e})")
sys.exit(0 if diff < bound else 1)
PY
}

export -f means compare_runs default_model
if [ -n "$PY" ]; then step default default_model; else skip default "no python"; fi

# the golden examples as one Parquet input
golden_input() {
  "$PY" - "$work/examples.jsonl" <<'PY' || return 1
import json, sys
g = json.load(open("tests/data/hf/golden.json"))["fixtures"]["qwen-prm"]["examples"]
with open(sys.argv[1], "w") as f:
    for e in g:
        f.write(json.dumps({"id": e["id"], "problem": e["problem"], "steps": e["steps"]}) + "\n")
PY
  "$BIN" convert "$work/examples.jsonl" -o "$work/examples.parquet"
}

# parity FIXTURE DTYPE BOUND: import, score on DEV, compare with the golden file
parity() {
  local fixture=$1 dtype=$2 bound=$3
  local model="$work/model-$fixture-$dtype"
  "$BIN" import --from "tests/data/hf/$fixture" -o "$model" --dtype "$dtype" --overwrite || return 1
  "$BIN" score -q -i "$work/examples.parquet" -o "$work/score-$fixture-$dtype" --overwrite \
    --model "$model" --device "$DEV" || return 1
  means "$work/score-$fixture-$dtype" "$work/score-$fixture-$dtype.json" || return 1
  "$PY" - "$fixture" "$dtype" "$DEV" "$bound" "$work/score-$fixture-$dtype.json" \
    "$OUT/parity.tsv" <<'PY'
import json, sys
fixture, dtype, dev, bound, got_path, table = sys.argv[1:7]
bound = float(bound)
ref = {e["id"]: e["step_probs"]
       for e in json.load(open("tests/data/hf/golden.json"))["fixtures"][fixture]["examples"]}
got = {r["id"]: r["step_mean"] for r in map(json.loads, open(got_path))}
diff = max(abs(a - b) for i in ref for a, b in zip(got[i], ref[i]))
ok = diff < bound
with open(table, "a") as f:
    f.write(f"{fixture}\t{dtype}\t{dev}\t{diff:.2e}\t{bound:.0e}\t{'ok' if ok else 'FAILED'}\n")
print(f"{fixture} {dtype} on {dev}: max |p - reference| = {diff:.2e} (bound {bound:.0e})")
sys.exit(0 if ok else 1)
PY
}

export -f golden_input parity
if [ -n "$PY" ] && step golden-input golden_input && [ -f "$work/examples.parquet" ]; then
  # f32 bounds: the CPU test's 1e-4, CUDA's kernels 1e-3; reduced precisions as tests/import.rs
  f32_bound=1e-4
  [ "$DEV" = cpu ] || f32_bound=1e-3
  for fixture in qwen-prm qwen-prm-sharded qwen-prm-bf16 actprm skywork math-shepherd rlhflow; do
    step "parity-$fixture-f32" parity "$fixture" f32 "$f32_bound"
  done
  step parity-qwen-prm-f16 parity qwen-prm f16 1e-2
  step parity-qwen-prm-int8 parity qwen-prm int8 5e-2
else
  skip parity "no python, or the golden examples could not be converted"
fi

# the peak of the GPU's used memory while a command runs (MiB; empty without nvidia-smi)
with_gpu_peak() {
  local samples="$work/gpu-samples.txt"
  : >"$samples"
  local sampler=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$samples" 2>/dev/null &
    sampler=$!
  fi
  "$@"
  local rc=$?
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  peak=$(sort -n "$samples" 2>/dev/null | tail -1)
  return $rc
}

# speed SHAPE: a random checkpoint of that shape, imported, scored at each budget, sharing on/off
speed() {
  local shape=$1
  local ckpt="$work/speed-$shape" dtype=f16
  [ "$DEV" = cpu ] && dtype=f32
  "$PY" tools/hf-reference/speed_checkpoint.py "$ckpt" "$LAYERS" "$shape" || return 1
  "$BIN" import --from "$ckpt" -o "$ckpt-model" --dtype "$dtype" --overwrite || return 1
  rm -f "$ckpt/model.safetensors"
  local layers
  layers=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$ckpt/config.json")
  "$BIN" sql --format parquet -o "$work/speed-input.parquet" \
    "select * from '$input' limit $ROWS" || return 1
  local failed=0
  for budget in ${BUDGETS//,/ }; do
    for sharing in on off; do
      local run="$work/speed-$shape-$budget-$sharing"
      peak=""
      with_gpu_peak "$BIN" score -q -i "$work/speed-input.parquet" -o "$run" --overwrite \
        --model "$ckpt-model" --device "$DEV" --token-budget "$budget" --prefix-sharing "$sharing"
      local rc=$?
      local result=ok
      [ $rc -eq 0 ] || { result="failed($rc)"; failed=1; }
      "$PY" - "$run/summary.json" "$shape" "$layers" "$dtype" "$budget" "$sharing" "${peak:-}" \
        "$result" >>"$OUT/speed.tsv" <<'PY'
import json, sys
path, shape, layers, dtype, budget, sharing, peak, result = sys.argv[1:9]
try:
    s = json.load(open(path))
    cols = [s["tokens"], s["tokens_computed"], f"{s['seconds']:.2f}", f"{s['tokens_per_second']:.1f}"]
except Exception:
    cols = ["", "", "", ""]
print("\t".join(map(str, [shape, layers, dtype, budget, sharing, *cols, peak, result])))
PY
    done
  done
  return $failed
}

export -f with_gpu_peak speed
if [ -n "$PY" ] && "$PY" -c "import numpy" 2>/dev/null; then
  for shape in ${SIZES//,/ }; do
    step "speed-$shape" speed "$shape"
  done
else
  skip speed "no python with numpy (set PY)"
fi

train_step() {
  "$BIN" score -q -i "$input" -o "$work/train-scored" --overwrite --features "$work/features.arrow" \
    || return 1
  "$BIN" train --features "$work/features.arrow" -o "$work/trained" --overwrite --device "$DEV" \
    --stop-after 1
}
export -f train_step
step train train_step

say "done: $(grep -c $'\tok\t' "$OUT/steps.tsv") steps ok of $(wc -l <"$OUT/steps.tsv")"
column -t -s $'\t' "$OUT/steps.tsv" | tee -a "$OUT/run.log"
exit 0
