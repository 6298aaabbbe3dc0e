"""Independent reference for `actprm convert` (run by hand, Python 3 standard library only).

Writes, from the real records in tests/data:
- tests/data/prm800k_raw_expected.jsonl: the trajectories PRM800K's raw examples convert to;
- tests/data/math_shepherd_style.jsonl: PRM800K test trajectories written in Math-Shepherd's raw
  layout (plus one record whose label text was altered, which convert must reject);
- tests/data/trl_stepwise.jsonl: the same trajectories in TRL's stepwise-supervision layout.

Rule for PRM800K raw (as docs say): follow each step's chosen completion; at a step without one,
the first completion rated -1 ends the trajectory as its first error, else the trajectory ends
before that step; the first -1 on the path is the first error (0 is neutral).
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def values(text):
    dec = json.JSONDecoder()
    i, out = 0, []
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        v, i = dec.raw_decode(text, i)
        out.append(v)
    return out


def prm800k(record):
    steps, label = [], -1
    for i, step in enumerate(record["label"]["steps"]):
        comps = step["completions"]
        chosen = step.get("chosen_completion")
        if chosen is not None:
            steps.append(comps[chosen]["text"])
            if comps[chosen].get("rating") == -1:
                label = i
                break
        else:
            bad = [c for c in comps if c.get("rating") == -1]
            if bad:
                steps.append(bad[0]["text"])
                label = i
            break
    return {"problem": record["question"]["problem"], "steps": steps, "label": label}


with open(DATA / "prm800k_raw_expected.jsonl", "w") as out:
    for path in sorted((DATA / "prm800k_raw").iterdir()):
        for index, record in enumerate(values(path.read_text())):
            row = prm800k(record)
            if not row["steps"]:
                continue  # nothing labelled to keep: convert rejects it
            row["id"] = f"{path.stem}-{index}"
            out.write(json.dumps(row) + "\n")

sample = [json.loads(l) for l in (DATA / "prm800k_test_sample.jsonl").read_text().splitlines() if l.strip()]
short = [r for r in sample if len(r["steps"]) <= 6]
chosen = [r for r in short if r["label"] >= 0][:2] + [r for r in short if r["label"] < 0][:2]
with open(DATA / "math_shepherd_style.jsonl", "w") as ms, open(DATA / "trl_stepwise.jsonl", "w") as trl:
    for r in chosen:
        verdicts = ["+" if r["label"] < 0 or i < r["label"] else "-" for i in range(len(r["steps"]))]
        body = "\n".join(f"Step {i + 1}: {s} ки" for i, s in enumerate(r["steps"]))
        labelled = "\n".join(f"Step {i + 1}: {s} {v}" for i, (s, v) in enumerate(zip(r["steps"], verdicts)))
        ms.write(json.dumps({"input": f"{r['problem']} {body}", "label": f"{r['problem']} {labelled}", "task": "PRM800K", "expected_label": r["label"]}, ensure_ascii=False) + "\n")
        trl.write(json.dumps({"prompt": r["problem"], "completions": r["steps"], "labels": [v == "+" for v in verdicts], "expected_label": r["label"]}, ensure_ascii=False) + "\n")
    # one damaged record: its label text no longer matches its input
    r = chosen[0]
    body = "\n".join(f"Step {i + 1}: {s} ки" for i, s in enumerate(r["steps"]))
    ms.write(json.dumps({"input": f"{r['problem']} {body}", "label": f"{r['problem']} (altered) Step 1: x +", "task": "PRM800K"}, ensure_ascii=False) + "\n")
print("wrote", DATA / "prm800k_raw_expected.jsonl", DATA / "math_shepherd_style.jsonl", DATA / "trl_stepwise.jsonl")
