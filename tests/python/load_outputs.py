"""Opens an actprm output folder the way Hugging Face users do and prints what they get, as JSON:
{"splits": {name: rows}, "columns": [...], "rows": [[id, step_mean], ...]} for
`load_dataset(FOLDER[, CONFIG])` (rows: of the first split, when it has those columns).
Run by tests/loaders.rs with .deps/datasets/bin/python (tests/python/requirements.txt)."""
import json
import sys

from datasets import load_dataset

folder = sys.argv[1]
config = sys.argv[2] if len(sys.argv) > 2 else None
ds = load_dataset(folder, config) if config else load_dataset(folder)
split = next(iter(ds.values()))
rows = ([[r["id"], r["step_mean"]] for r in split]
        if {"id", "step_mean"} <= set(split.column_names) else [])
print(json.dumps({"splits": {name: d.num_rows for name, d in ds.items()},
                  "columns": split.column_names, "rows": rows}))
