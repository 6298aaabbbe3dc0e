#!/usr/bin/env python3
"""Convert the MR-Ben math subset into a ProcessBench-shaped development set.

Source
    GitHub dvlab-research/Mr-Ben, snapshot commit 6eb1eca8861be411838c7c1c189dba208c140e06
    ("update readme"). File used: ``data/math.json`` (git blob
    976b51ef327d1b6a87f54104fb7bf277f04a5f91, 2,532,882 bytes): a JSON object
    ``{Question_UUID: [3 solutions]}``, one solution each from Claude2, GPT3.5 and
    mistral-medium, 306 questions, 918 solutions, subjects ``high_school_math`` (666) and
    ``college_math`` (252). The math questions are multiple-choice (MMLU-style, ``Options``).
    No other file of the repository is read.

Licence
    MIT, "Copyright (c) 2024 DV Lab" (the repository's ``LICENSE``, copied to
    ``tests/data/dev/MR_BEN_LICENSE``).

Output
    One JSON object per line, ``{"id", "problem", "steps", "label"}`` (ProcessBench convention,
    as ``shared/data/README.md`` describes): ``label`` is the 0-based index of the first wrong
    step, or -1 when the annotators judged the whole solution correct.

    * ``id``      = ``mr_ben/<Subject>/<Question_UUID>/<Sampled_Model>`` (unique; the UUID alone is
      shared by the three solutions of a question).
    * ``problem`` = ``Question`` + ``"\\n\\nOptions:\\n"`` + ``Options`` (the solutions refer to
      ``Choice_A`` ... so the options are part of the problem; MR-Ben's own prompt also shows
      question and options together).
    * ``steps``   = ``Model_Solution_Steps`` regrouped so that one step is what the annotators
      could point at: a new step starts at each element that begins with a top-level marker
      ``Step k:`` (k an integer; three records have the "S" lost, ``tep 1:``, which also counts).
      Every other element -- continuation lines, sub-steps ``Step k.m``, unnumbered
      ``Step n:`` lines, the final ``Solution: Choice_X`` line, trailing notes -- is appended to
      the step before it, joined with ``"\\n"``. The ``Step k:`` prefix is kept, as in
      ``shared/data/mr_gsm8k/mr_gsm8k_subset.jsonl``; the text is otherwise verbatim.
      The markers must run 1, 2, ..., n, so ``steps[k-1]`` is "Step k".
    * ``label``   = ``int(Model_Solution_First_Error_Step) - 1`` (the field is 1-based: it names
      "Step k", and evaluate.py compares it to the model's "Step x" answer) when
      ``Model_Solution_Correctness == "incorrect"``; -1 when it is ``"correct"`` and the step
      field is ``"N/A"``.

Rule for conflicting or missing labels (none occur at this commit; all are counted, none dropped
silently): a record is skipped, with its reason counted and printed, when its subject is not a math
subject, its correctness is neither "correct" nor "incorrect" (no human label), it is "correct"
but has a first-error step, it is "incorrect" but has no (integer) first-error step, its steps have
no ``Step 1:`` marker at the start or the markers are not 1..n, the first-error step is beyond the
last marker, or its id repeats. Neither field is trusted over the other.

Usage
    python3 tools/dev-sets/mr_ben.py PATH [-o tests/data/dev/mr_ben_math.jsonl]

PATH is a checkout of the repository (``PATH/data/math.json``), a folder holding ``math.json``,
or the ``math.json`` file itself. The script prints the counts and warns if the file's git blob
hash differs from the one above.
"""

import argparse
import collections
import hashlib
import json
import os
import re
import sys

SOURCE_REPO = "dvlab-research/Mr-Ben"
SOURCE_COMMIT = "6eb1eca8861be411838c7c1c189dba208c140e06"
SOURCE_PATH = "data/math.json"
SOURCE_BLOB = "976b51ef327d1b6a87f54104fb7bf277f04a5f91"
MATH_SUBJECTS = {"high_school_math", "college_math"}

# A top-level step marker at the start of an element: "Step 3:", "Step 3.", "**Step 3:**",
# "tep 1:" (three source records lost the "S"). Not "Step 3.1" (a sub-step) nor "Step n:".
TOP_STEP = re.compile(r"^\s*\**\s*S?tep\s*(\d+)\s*\**\s*[:.\uff1a]", re.IGNORECASE)
SUB_STEP = re.compile(r"^\s*\**\s*S?tep\s*\d+\.\d", re.IGNORECASE)


def find_source(path):
    if os.path.isfile(path):
        return path
    for cand in (os.path.join(path, SOURCE_PATH), os.path.join(path, "math.json")):
        if os.path.isfile(cand):
            return cand
    sys.exit(f"no {SOURCE_PATH} or math.json under {path}")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def group_steps(elements):
    """Returns (steps, marker numbers) with one step per top-level "Step k" marker."""
    steps, numbers = [], []
    for x in elements:
        m = TOP_STEP.match(x)
        if m and not SUB_STEP.match(x):
            numbers.append(int(m.group(1)))
            steps.append([x])
        elif steps:
            steps[-1].append(x)
        else:
            return None, None  # text before the first marker
    return ["\n".join(s) for s in steps], numbers


def convert(records):
    out, skipped, seen = [], collections.Counter(), set()
    for r in records:
        subject = r.get("Subject")
        if subject not in MATH_SUBJECTS:
            skipped[f"subject not math ({subject})"] += 1
            continue
        correctness = str(r.get("Model_Solution_Correctness", "")).strip().lower()
        first = str(r.get("Model_Solution_First_Error_Step", "")).strip()
        has_first = first not in ("", "N/A", "None")
        if correctness not in ("correct", "incorrect"):
            skipped["no human correctness label"] += 1
            continue
        if correctness == "correct" and has_first:
            skipped["correct but a first-error step is set"] += 1
            continue
        if correctness == "incorrect" and not first.isdigit():
            skipped["incorrect but no integer first-error step"] += 1
            continue
        steps, numbers = group_steps(r["Model_Solution_Steps"])
        if steps is None or not steps:
            skipped["no 'Step 1:' marker at the start"] += 1
            continue
        if numbers != list(range(1, len(numbers) + 1)):
            skipped["step markers not numbered 1..n"] += 1
            continue
        label = -1
        if correctness == "incorrect":
            label = int(first) - 1
            if not 0 <= label < len(steps):
                skipped["first-error step beyond the last step"] += 1
                continue
        rid = f"mr_ben/{subject}/{r['Question_UUID']}/{r['Sampled_Model']}"
        if rid in seen:
            skipped["duplicate id"] += 1
            continue
        seen.add(rid)
        problem = r["Question"].rstrip() + "\n\nOptions:\n" + r["Options"].strip()
        out.append({"id": rid, "problem": problem, "steps": steps, "label": label})
    return out, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", help="Mr-Ben checkout, a folder with math.json, or math.json")
    ap.add_argument("-o", "--output", default="tests/data/dev/mr_ben_math.jsonl")
    args = ap.parse_args()
    src = find_source(args.path)
    raw = open(src, "rb").read()
    blob = git_blob_sha1(raw)
    if blob != SOURCE_BLOB:
        print(f"warning: {src} has git blob {blob}, not {SOURCE_BLOB} (commit "
              f"{SOURCE_COMMIT[:8]}); the counts below may differ", file=sys.stderr)
    data = json.loads(raw)
    records = [s for sols in data.values() for s in sols]
    out, skipped = convert(records)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for o in out:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    wrong = [o for o in out if o["label"] >= 0]
    last = sum(1 for o in wrong if o["label"] == len(o["steps"]) - 1)
    print(f"read {len(records)} solutions from {src}")
    print(f"wrote {len(out)} to {args.output}: {len(wrong)} with a first wrong step, "
          f"{len(out) - len(wrong)} correct; first wrong step is the last step in {last}")
    for reason, n in sorted(skipped.items()):
        print(f"skipped {n}: {reason}")
    if not skipped:
        print("skipped 0")


if __name__ == "__main__":
    main()
