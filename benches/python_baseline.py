#!/usr/bin/env python3
"""The straightforward Python pipeline users write for the same filter job, for the Rust/Python
benchmark (benches/filter_vs_python.rs runs both side by side on the same input and model files).

pyarrow reads the Parquet files, `tokenizers` tokenises with the same tokenizer.json, onnxruntime
runs the same backbone and heads ONNX files; steps are read at the separator after each step
(windows over long trajectories, the problem repeated), ActPRM's rule selects, kept rows are
written as Parquet. Windows are length-sorted and run in batches of --batch (tuned on this 2-core
CPU over 600 generated rows: 9.3 / 11.4 / 13.1 / 13.7 rows/s at 16 / 4 / 2 / 1, so 1 by default).

usage: python_baseline.py MODEL_DIR OUT_DIR INPUT.parquet... [--keep-rate X] [--threads N]
"""
import argparse, glob, json, os, sys, time

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer


def resolve(model_dir, ref):
    if ref.startswith("deps:"):
        return os.path.join(os.environ.get("ACTPRM_DEPS", ".deps"), ref[5:])
    return ref if os.path.isabs(ref) else os.path.join(model_dir, ref)


def windows(problem, steps, sp, max_len, max_problem):
    prefix = ([sp["bos"]] if sp["bos"] is not None else []) + problem[:max_problem] + ([sp["end"]] if sp["end"] is not None else [])
    budget = max(max_len - len(prefix), 2)
    out, cur, seps, used = [], list(prefix), [], 0
    for s in steps:
        keep = min(len(s), budget - 1)
        if used + keep + 1 > budget and seps:
            out.append((cur, seps)); cur, seps, used = list(prefix), [], 0
        cur += s[len(s) - keep:] + [sp["step"]]
        seps.append(len(cur) - 1); used += keep + 1
    out.append((cur, seps))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("out"); ap.add_argument("inputs", nargs="+")
    ap.add_argument("--keep-rate", type=float, default=0.6); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    m = json.load(open(os.path.join(a.model, "manifest.json")))
    tok = Tokenizer.from_file(resolve(a.model, m["tokenizer"]))
    tok.no_truncation(); tok.no_padding()
    sep = m["separator"]
    sp = {"bos": tok.token_to_id(sep["bos"]) if sep.get("bos") else None,
          "end": tok.token_to_id(sep["problem_end"]) if sep.get("problem_end") else None,
          "step": tok.token_to_id(sep["step"])}
    so = ort.SessionOptions(); so.intra_op_num_threads = a.threads
    # a backbone actprm builds from fp32 weights names its precision: auto is int8-rows on CPU
    # (actprm writes the file on first use, so run actprm on the model once before this)
    precision = m.get("backbone_precision", "auto")
    backbone_ref = m["backbone"].replace("{precision}", "int8-rows" if precision == "auto" else precision)
    backbone = ort.InferenceSession(resolve(a.model, backbone_ref), so, providers=["CPUExecutionProvider"])
    heads = ort.InferenceSession(os.path.join(a.model, m["heads"]), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in backbone.get_inputs()}
    os.makedirs(a.out, exist_ok=True)
    files = sorted(f for p in a.inputs for f in (glob.glob(os.path.join(p, "*.parquet")) if os.path.isdir(p) else [p]))
    t0 = time.time(); rows = tokens = kept = 0
    for fi, f in enumerate(files):
        pf = pq.ParquetFile(f)
        writer = None
        for rb in pf.iter_batches(batch_size=64):
            t = pa.Table.from_batches([rb])
            problems = t.column("problem").to_pylist(); steps = t.column("steps").to_pylist()
            enc = tok.encode_batch([p for p in problems] + [s for ss in steps for s in ss], add_special_tokens=False)
            ids = [e.ids for e in enc]; pos = len(problems)
            wins = []  # (row, ids, seps)
            for r, ss in enumerate(steps):
                st = ids[pos:pos + len(ss)]; pos += len(ss)
                for w, s in windows(ids[r], st, sp, m["max_length"], m["max_problem_tokens"]):
                    wins.append((r, w, s))
            feats = [[] for _ in problems]
            order = sorted(range(len(wins)), key=lambda i: len(wins[i][1]))
            for b in range(0, len(order), a.batch):
                idx = order[b:b + a.batch]; L = max(len(wins[i][1]) for i in idx)
                x = np.zeros((len(idx), L), np.int64); mask = np.zeros_like(x)
                for j, i in enumerate(idx):
                    x[j, :len(wins[i][1])] = wins[i][1]; mask[j, :len(wins[i][1])] = 1
                feed = {"input_ids": x, "attention_mask": mask}
                if "token_type_ids" in names: feed["token_type_ids"] = np.zeros_like(x)
                h = backbone.run(["last_hidden_state"], feed)[0]
                tokens += len(idx) * 0 + int(mask.sum())
                for j, i in enumerate(idx):
                    feats[wins[i][0]].append((wins[i][2][0] if wins[i][2] else 0, h[j, wins[i][2]]))
            unc = []
            for r in range(len(problems)):
                f_r = np.concatenate([v for _, v in sorted(feats[r], key=lambda z: z[0])], axis=0)
                p = heads.run(["probs"], {"features": f_r.astype(np.float32)})[0]
                mu = p.mean(1); sd = p.std(1, ddof=1) if p.shape[1] > 1 else np.zeros_like(mu)
                below = np.nonzero(mu < 0.5)[0]; k = below[0] if len(below) else len(mu) - 1
                conf = np.maximum(mu, 1 - mu)[:k + 1]
                unc.append(float(max(((1 - conf) / 0.1).max(), (sd[:k + 1] / 0.01).max())))
            n_keep = int(round(len(unc) * a.keep_rate))
            keep = sorted(sorted(range(len(unc)), key=lambda i: (-unc[i], i))[:n_keep])
            out = t.take(pa.array(keep, pa.int64())).append_column("uncertainty", pa.array([unc[i] for i in keep], pa.float32()))
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(a.out, f"kept-{fi:05}.parquet"), out.schema, compression="zstd")
            writer.write_table(out); rows += len(problems); kept += len(keep)
        if writer: writer.close()
    dt = time.time() - t0
    print(json.dumps({"rows": rows, "kept": kept, "tokens": tokens, "seconds": dt, "rows_per_second": rows / dt, "tokens_per_second": tokens / dt}))


if __name__ == "__main__":
    sys.exit(main())
