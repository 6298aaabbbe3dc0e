#!/usr/bin/env python3
"""Compare the Rust port of the arithmetic check (src/score/check/) with the Python prototype.

Runs check.py's checker over every step of the four data sets it measures (PRM800K phase-1
train and test, BIG-Bench-Mistake, MR-GSM8K), writes the step texts as one JSON string per
line, runs the Rust harness (tools/arith_check/rust_harness.rs, built with plain rustc) over
them, and reports per set:

  * how many steps the two disagree on: flagged vs not, and checked vs not (up to 10 examples
    of each kind);
  * the step-level table of RESULTS.md (steps checked, flagged, exact / loose precision,
    false alarms) for both implementations.

Usage (from the repository root):
    python3 tools/arith_check/compare.py                   # builds /tmp/arith_harness first
    python3 tools/arith_check/compare.py --harness BIN     # use an already built harness
    python3 tools/arith_check/compare.py --sets bbm --examples 20
    python3 tools/arith_check/compare.py --fuzz 20000      # also: random and mutated steps
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import check  # noqa: E402  (the prototype, beside this file)

SETS = ["prm_train", "prm_test", "bbm", "mrgsm8k"]
TITLES = {
    "prm_train": "PRM800K train (tuned on)",
    "prm_test": "PRM800K test (dev)",
    "bbm": "BIG-Bench-Mistake arithmetic",
    "mrgsm8k": "MR-GSM8K subset",
}


def collect(names):
    """All steps of the sets: list of (set, trajectory id, step index, label, text)."""
    rows = []
    for name in names:
        for tid, steps, label, _ in check.load(name):
            for i, s in enumerate(steps):
                rows.append((name, tid, i, label, s))
    return rows


def run_python(rows):
    """(checked, flagged, first flag description) per step, and the seconds it took."""
    t0 = time.perf_counter()
    out = []
    for _, _, _, _, s in rows:
        try:
            r = check.check_step(s)
        except Exception as e:  # the prototype crashes on a few odd inputs (e.g. '²')
            out.append((None, None, f"python error: {e!r}"))
            continue
        desc = ""
        if r["flags"]:
            f = r["flags"][0]
            desc = f"{f['eq']}  [{check.fmt_vals(f['left'])} vs {check.fmt_vals(f['right'])}]"
        out.append((bool(r["checked"]), bool(r["flags"]), desc))
    return out, time.perf_counter() - t0


def build_harness(path):
    src = os.path.join(HERE, "rust_harness.rs")
    cmd = ["rustc", "--edition", "2021", "-O", src, "-o", path]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_rust(harness, rows):
    """(checked, flagged, claim / computed) per step from the Rust harness, and its seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for *_, s in rows:
            f.write(json.dumps(s) + "\n")
        steps_file = f.name
    try:
        t0 = time.perf_counter()
        res = subprocess.run([harness, steps_file], capture_output=True, text=True, check=True)
        secs = time.perf_counter() - t0
    finally:
        os.unlink(steps_file)
    out = []
    for line in res.stdout.splitlines():
        flags, claim, computed = line.split("\t")
        c, fl = flags.split()
        out.append((c == "1", fl == "1", f"{claim}  [left = {computed}]" if fl == "1" else ""))
    if len(out) != len(rows):
        raise SystemExit(f"harness returned {len(out)} rows for {len(rows)} steps")
    return out, secs


PIECES = [
    "1", "2", "3", "7", "12", "45", "100", "0", "0.5", ".25", "3.14", "1,000", "12,345", "1{,}000",
    "99999999999999999999", " = ", "=", " \\approx ", "≈", " + ", "+", " - ", "-", "−", " * ",
    "*", "/", " / ", "^", "^{2}", "**", "!", "! ", "%", "\\%", "(", ")", "{", "}", "\\frac{1}{2}",
    "\\frac", "\\dfrac{3}{4}", "\\sqrt{2}", "\\sqrt", "\\binom{5}{2}", "\\boxed{", "\\text{ apples}",
    "\\left(", "\\right)", " \\cdot ", " \\times ", "\\div", " x ", "$", "\\$", "<<", ">>",
    "Step 1: ", " ", " ", " ", "\n", "x", " of ", " not ", " total ", " and ", " is ", " about ",
    " minutes", "?", ". ", ".", ",", ":", "\\\\", "^\\circ", "°", "\\pi", "\\le", "<", "~", "...",
    "\\[", "\\]", "\\neq", "sqrt(", " so ", " times ", " if ", "f(", "x_1", "3x", " wrong ",
    "\\!", "é", "\u00d7", "÷", "\u2212", " per ", " each ", " wait ", " than ", " Step 3: ",
    " approximately ", " incorrect ", "≠", " rounded ", " sum ", " a total of ", " dollars", " I ",
    "\\text{if}", " hmm ", "'", "\u2019", "!=", "==", "=>", "<=", "\\ne ", "(3)(4)", "2!", "3!7!",
    "24 / 2/3", "2\\frac{1}{2}", "8^{1/3}", "\\sqrt{8}", "\\tfrac12",
]


def fuzz_rows(rows, n, seed=1):
    """`n` synthetic steps: a third random pieces, a third real steps with pieces inserted,
    and a third real steps with a digit or operator changed (which turns true equalities
    into false ones)."""
    rng = random.Random(seed)
    real = [r[4] for r in rows if "=" in r[4]]
    out = []
    for k in range(n):
        if k % 3 == 0 or not real:
            s = "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 30)))
        elif k % 3 == 1:
            s = rng.choice(real)
            for _ in range(rng.randrange(1, 4)):
                j = rng.randrange(len(s) + 1)
                s = s[:j] + rng.choice(PIECES) + s[j:]
        else:
            s = list(rng.choice(real))
            for _ in range(rng.randrange(1, 3)):
                j = rng.randrange(len(s))
                if s[j].isdigit():
                    s[j] = rng.choice("0123456789")
                elif s[j] in "+-*/":
                    s[j] = rng.choice("+-*/")
            s = "".join(s)
        out.append(("fuzz", f"fuzz-{k}", 0, -1, s))
    return out


def step_table(rows, results):
    """Per set: the step-level numbers of RESULTS.md."""
    stats = {}
    for (name, tid, i, label, s), (checked, flagged, _) in zip(rows, results):
        if name == "fuzz":
            continue
        st = stats.setdefault(name, dict(traj=set(), err=set(), steps=0, checked=0, flagged=0,
                                         texts=set(), exact=0, loose=0, alarms=0,
                                         alarm_texts=set()))
        st["traj"].add(tid)
        if label != -1:
            st["err"].add(tid)
        st["steps"] += 1
        st["checked"] += checked
        if flagged:
            st["flagged"] += 1
            st["texts"].add(s)
            st["exact"] += label != -1 and i == label
            st["loose"] += label != -1 and i >= label
            if label == -1 or i < label:
                st["alarms"] += 1
                st["alarm_texts"].add(s)
    return stats


def fmt_row(name, who, st):
    n_t, n_e = len(st["traj"]), len(st["err"])
    fl = st["flagged"]

    def frac(k):
        return f"{k} = {k / fl:.3f}" if fl else f"{k}"
    return (f"| {TITLES[name]} | {who} | {n_t} ({n_e} / {n_t - n_e}) | {st['steps']} | "
            f"{st['checked']} ({st['checked'] / st['steps']:.1%}) | {fl} "
            f"({len(st['texts'])} distinct) | {frac(st['exact'])} | {frac(st['loose'])} | "
            f"{frac(st['alarms'])} ({len(st['alarm_texts'])} distinct) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=SETS)
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--harness", help="a built rust_harness binary (default: build one)")
    ap.add_argument("--fuzz", type=int, default=0,
                    help="also compare on this many random and mutated steps")
    a = ap.parse_args()

    rows = collect(a.sets)
    if a.fuzz:
        rows += fuzz_rows(rows, a.fuzz)
    harness = a.harness
    if harness is None:
        harness = os.path.join(tempfile.gettempdir(), "arith_harness")
        build_harness(harness)
    py, py_s = run_python(rows)
    rs, rs_s = run_rust(harness, rows)
    print(f"{len(rows)} steps; Python {py_s:.1f} s, Rust {rs_s:.2f} s (including start-up)\n")

    total_flag = total_check = 0
    for name in a.sets + (["fuzz"] if a.fuzz else []):
        idx = [k for k, r in enumerate(rows) if r[0] == name and py[k][0] is not None]
        crashed = sum(1 for k, r in enumerate(rows) if r[0] == name and py[k][0] is None)
        if crashed:
            print(f"   ({name}: {crashed} inputs on which the prototype raised are left out)")
        flag_diff = [k for k in idx if py[k][1] != rs[k][1]]
        check_diff = [k for k in idx if py[k][0] != rs[k][0]]
        total_flag += len(flag_diff)
        total_check += len(check_diff)
        print(f"== {TITLES.get(name, name)}: {len(idx)} steps; flag disagreements {len(flag_diff)}, "
              f"checked disagreements {len(check_diff)}")
        for kind, diff in (("flag", flag_diff), ("checked", check_diff)):
            for k in diff[:a.examples]:
                _, tid, i, label, s = rows[k]
                print(f"  [{kind}] {tid} step {i} (label {label}): {s[:240]!r}")
                print(f"      python checked={py[k][0]} flagged={py[k][1]} {py[k][2]}")
                print(f"      rust   checked={rs[k][0]} flagged={rs[k][1]} {rs[k][2]}")
        print()

    print("Step level (same definitions as RESULTS.md):\n")
    print("| set | impl | trajectories (err / correct) | steps | steps checked | steps flagged "
          "| exact | loose | false alarms |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    py_st, rs_st = step_table(rows, py), step_table(rows, rs)
    for name in a.sets:
        print(fmt_row(name, "Python", py_st[name]))
        print(fmt_row(name, "Rust", rs_st[name]))
    print(f"\ntotal: flag disagreements {total_flag}, checked disagreements {total_check}")


if __name__ == "__main__":
    main()
