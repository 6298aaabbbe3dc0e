"""Writes tests/data/arith_check_reference.jsonl: the Python prototype's verdict on every step of
the three real sample files in tests/data, for the Rust port's test (tests/eval.rs) to compare
with. Python 3.11, standard library only. Rerun: python3 tools/arith_check/reference_fixture.py"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from check import check_step  # noqa: E402

SAMPLES = ["prm800k_test_sample.jsonl", "bigbench_mistake_sample.jsonl", "mr_gsm8k_sample.jsonl"]


def main():
    out = os.path.join(ROOT, "tests", "data", "arith_check_reference.jsonl")
    with open(out, "w") as w:
        for name in SAMPLES:
            with open(os.path.join(ROOT, "tests", "data", name)) as f:
                for row, line in enumerate(f):
                    record = json.loads(line)
                    steps = record.get("steps") or record.get("model_output_steps")
                    flags = [i for i, s in enumerate(steps) if check_step(s)["flags"]]
                    checked = [i for i, s in enumerate(steps) if check_step(s)["checked"]]
                    w.write(json.dumps({"file": name, "row": row, "steps": steps,
                                        "checked": checked, "flags": flags}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
