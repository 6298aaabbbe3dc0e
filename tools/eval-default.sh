#!/usr/bin/env bash
# The embedded default model on the three development sets, as the README's "The default model"
# table reports it (issue 16): `actprm eval` with the model's own rule (heads + the exact
# arithmetic check, `check: min` in its manifest) and, as the before column, the heads alone
# (`--check off`). Run by hand after ./setup.sh; not part of `cargo test`.
#
#   tools/eval-default.sh [DATA_DIR] [-- extra eval flags, e.g. --model DIR or --device cuda]
#
# DATA_DIR holds the development data (default: ../shared/data beside this checkout): PRM800K
# phase-1 test, BIG-Bench-Mistake multistep arithmetic, MR-GSM8K (its README has provenance).
# About a minute per pass on 2 CPU cores (1 min 48 s for both, measured).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == -- ]] && shift
sets=(
  "$data/prm800k/phase1_test.trajectories.jsonl"
  "$data/bigbench_mistake/multistep_arithmetic.jsonl"
  "$data/mr_gsm8k/mr_gsm8k_subset.jsonl"
)
for f in "${sets[@]}"; do
  [[ -f $f ]] || { echo "missing development set: $f" >&2; exit 2; }
done
cargo build --release --quiet
bin=target/release/actprm
echo "## the default model as shipped (its manifest's rule: heads + arithmetic check)"
"$bin" eval "$@" "${sets[@]}"
echo
echo "## the heads alone (--check off), the default before issue 16"
"$bin" eval --check off "$@" "${sets[@]}"
