#!/usr/bin/env bash
# The embedded default model on the four development sets, as the README's "The default model"
# table reports it (issues 16 and 35): `actprm eval` with the model's own rule (heads + the exact
# arithmetic check, `check: min` in its manifest), then the heads alone (`--check off`). Every
# table also shows the last-step baseline and the step AUROC. Run by hand after ./setup.sh; not
# part of `cargo test`.
#
#   tools/eval-default.sh [DATA_DIR] [-- extra eval flags, e.g. --model DIR or --device cuda]
#
# DATA_DIR holds the development data (default: ../shared/data beside this checkout): PRM800K
# phase-1 test, BIG-Bench-Mistake multistep arithmetic, MR-GSM8K (its README has provenance); MR-Ben
# math ships in tests/data/dev (tools/dev-sets/README.md). The transfer criterion that chose the
# default is the mean of BIG-Bench-Mistake F1, MR-GSM8K acc and MR-Ben F1: those solutions go on
# past their first error, PRM800K's stop there. About 1.5 minutes per pass on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == -- ]] && shift
sets=(
  "$data/prm800k/phase1_test.trajectories.jsonl"
  "$data/bigbench_mistake/multistep_arithmetic.jsonl"
  "$data/mr_gsm8k/mr_gsm8k_subset.jsonl"
  tests/data/dev/mr_ben_math.jsonl
)
for f in "${sets[@]}"; do
  [[ -f $f ]] || { echo "missing development set: $f" >&2; exit 2; }
done
cargo build --release --quiet
bin=target/release/actprm
echo "## the default model as shipped (its manifest's rule: heads + arithmetic check)"
"$bin" eval "$@" "${sets[@]}"
echo
echo "## the heads alone (--check off)"
"$bin" eval --check off "$@" "${sets[@]}"
