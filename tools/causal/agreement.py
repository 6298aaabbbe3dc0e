"""Issue 35: how close is one step-causal pass to true prefix encoding?

True prefix encoding scores step k by encoding `[CLS] problem [SEP] step_1 [SEP] ... step_k [SEP]`
alone with the plain (bidirectional) encoder and reading the last separator: exact, but one
backbone pass per step. The step-causal graph reads every step in one pass; inside the prefix,
an earlier step's tokens do not see the later steps of the prefix either, so the two differ.
This compares the step features of three feature stores (`actprm score --features`):

  causal.arrow    the whole trajectories, step-causal default backbone
  prefixes.arrow  one row per (trajectory, k) with steps[:k], bidirectional backbone
                  (rows in order: trajectory 1 k=1..n1, trajectory 2 k=1..n2, ...)
  bidir.arrow     the whole trajectories, bidirectional backbone (the old default: sees later steps)

and prints the mean / 5th percentile cosine of each step's feature with the prefix encoding's.
Requirements: pyarrow, numpy (pinned in tools/causal/requirements.txt).

    python tools/causal/agreement.py causal.arrow prefixes.arrow bidir.arrow
"""
import sys

import numpy as np
import pyarrow as pa


def steps(path):
    with pa.memory_map(path) as source:
        try:
            table = pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_stream(source).read_all()
    return [np.asarray(row, dtype=np.float32).reshape(-1, 384)
            for row in table.column("step_features").to_pylist()]


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main(causal_path, prefixes_path, bidir_path):
    causal, prefixes, bidir = steps(causal_path), steps(prefixes_path), steps(bidir_path)
    assert len(causal) == len(bidir)
    exact = []  # per trajectory: the prefix encoding of each of its steps
    cursor = 0
    for row in causal:
        n = len(row)
        exact.append(np.stack([prefixes[cursor + k][k] for k in range(n)]))
        cursor += n
    assert cursor == len(prefixes), (cursor, len(prefixes))
    for name, store in [("step-causal, one pass", causal), ("bidirectional (old default)", bidir)]:
        cos = np.array([cosine(a, b) for rows, ref in zip(store, exact) for a, b in zip(rows, ref)])
        last = np.array([cosine(rows[-1], ref[-1]) for rows, ref in zip(store, exact)])
        first = np.array([cosine(rows[0], ref[0]) for rows, ref in zip(store, exact) if len(rows) > 1])
        print(f"{name:30s} cosine with prefix encoding: mean {cos.mean():.4f}, p5 {np.percentile(cos, 5):.4f}, "
              f"min {cos.min():.4f}; first step of multi-step rows {first.mean():.4f}; last step {last.mean():.4f} "
              f"({len(cos)} steps)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
