"""transformers on the texts `benches/prefix_sharing.rs` scores: the reference's way of running a
Qwen2.5-Math-PRM-style model, for the bench's last columns.

    python benches/prefix_sharing_transformers.py CHECKPOINT CORPUS.parquet

Builds each row's conversation as the model card does (system prompt, the problem, the steps
joined by `<extra_0>`, through the tokenizer's chat template), encodes the whole text and runs
the checkpoint's decoder (`Qwen2Model`, sdpa attention, f32, no gradients) one conversation at a
time, as the reference code does (no padding, nothing shared). Threads: `torch.set_num_threads`
from ACTPRM_BENCH_THREADS (default 2, the bench machine's cores). Prints one JSON line: rows,
tokens, seconds, rows/s and tokens/s (the model's load excluded; the bench measures the process's
peak memory).

Environment: tools/hf-reference/requirements.txt (torch 2.13.0, transformers 4.57.6) plus
pyarrow==26.0.1.
"""
import json
import os
import sys
import time

import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer, Qwen2Model

# tools/hf-reference/make_fixtures.py QWEN_MATH_SYSTEM, the model card's system prompt
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def main():
    checkpoint, corpus = sys.argv[1], sys.argv[2]
    torch.set_num_threads(int(os.environ.get("ACTPRM_BENCH_THREADS", "2")))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = Qwen2Model.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    table = pq.read_table(corpus, columns=["problem", "steps"]).to_pylist()
    encoded = []
    for row in table:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": row["problem"]},
            {"role": "assistant", "content": "<extra_0>".join(row["steps"]) + "<extra_0>"},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        encoded.append(tokenizer.encode(text, return_tensors="pt"))
    started = time.perf_counter()
    with torch.inference_mode():
        for ids in encoded:
            model(input_ids=ids)
    seconds = time.perf_counter() - started
    tokens = sum(ids.shape[1] for ids in encoded)
    print(json.dumps({
        "rows": len(encoded),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "rows_per_s": len(encoded) / seconds,
        "tokens_per_s": tokens / seconds,
    }))


if __name__ == "__main__":
    main()
