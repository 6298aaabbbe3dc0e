"""A random-weight Qwen2 PRM checkpoint at Qwen2.5-0.5B's width, for CPU/GPU speed runs only.

    python tools/hf-reference/speed_checkpoint.py OUT_DIR [LAYERS] [0.5b|7b]

Qwen2.5-0.5B's shapes (hidden 896, 14 query / 2 key-value heads of 64, MLP 4864; 24 layers
unless LAYERS says otherwise; 0 or absent: the model's own count), or with `7b` Qwen2.5-7B's
(hidden 3584, 28 / 4 heads of 128, MLP 18944, 28 layers; stored F16, 15 GB, written tensor by
tensor so memory stays small) with Qwen2.5-Math-PRM's head (score.0 [H, H], score.2 [2, H]); the
tokenizer, template and special tokens are the tiny `qwen-prm` fixture's (vocabulary 704), so the
embeddings are small and every id is in range. Random weights: the scores mean nothing, only
tokens/s does. Needs numpy only (tested with numpy 2.x).
"""
import json, shutil, struct, sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
kind = sys.argv[3] if len(sys.argv) > 3 else "0.5b"
h, heads, kv, inter, default_layers, dtype = {
    "0.5b": (896, 14, 2, 4864, 24, "F32"),
    "7b": (3584, 28, 4, 18944, 28, "F16"),
}[kind]
layers = int(sys.argv[2]) if len(sys.argv) > 2 and int(sys.argv[2]) > 0 else default_layers
np_dtype = {"F32": np.float32, "F16": np.float16}[dtype]
fixture = Path(__file__).resolve().parents[2] / "tests/data/hf/qwen-prm"
out.mkdir(parents=True, exist_ok=True)
for f in ["tokenizer.json", "tokenizer_config.json"]:
    shutil.copy(fixture / f, out / f)
config = json.loads((fixture / "config.json").read_text())
config.update(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv,
              intermediate_size=inter, num_hidden_layers=layers, max_window_layers=layers)
(out / "config.json").write_text(json.dumps(config, indent=2))
rng = np.random.default_rng(0)
hd = h // heads
tensors = {"model.embed_tokens.weight": (config["vocab_size"], h), "model.norm.weight": (h,),
           "score.0.weight": (h, h), "score.0.bias": (h,), "score.2.weight": (2, h),
           "score.2.bias": (2,)}
for i in range(layers):
    p = f"model.layers.{i}."
    tensors.update({p + "input_layernorm.weight": (h,),
                    p + "post_attention_layernorm.weight": (h,),
                    p + "self_attn.q_proj.weight": (heads * hd, h), p + "self_attn.q_proj.bias": (heads * hd,),
                    p + "self_attn.k_proj.weight": (kv * hd, h), p + "self_attn.k_proj.bias": (kv * hd,),
                    p + "self_attn.v_proj.weight": (kv * hd, h), p + "self_attn.v_proj.bias": (kv * hd,),
                    p + "self_attn.o_proj.weight": (h, heads * hd),
                    p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
                    p + "mlp.down_proj.weight": (h, inter)})
header, offset = {}, 0
size = np.dtype(np_dtype).itemsize
for name, shape in tensors.items():
    n = int(np.prod(shape)) * size
    header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
    offset += n
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(out / "model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name, shape in tensors.items():
        if name.endswith("norm.weight"):
            a = np.ones(shape, np_dtype)
        else:
            a = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np_dtype)
        f.write(a.tobytes())
print(f"{out}: {kind} shape, {layers} layers, {offset / 1e9:.2f} GB {dtype}")
