"""ORT session options on the int8-rows default graph: optimisation levels, intra/inter-op threads.
Same 120 PRM800K test windows as bench.py, interleaved rounds, median tokens/s."""
import os, sys, time
import numpy as np, onnxruntime as ort
sys.argv = [sys.argv[0]]
exec(open(os.path.join(os.path.dirname(__file__), 'variants.py')).read().split("ort.set_default_logger_severity(3)")[0])
ort.set_default_logger_severity(3)
G = f'{DEPS}/minilm-fp32/backbone-v2-int8-rows.onnx'
L = ort.GraphOptimizationLevel
def mk(level=L.ORT_ENABLE_ALL, intra=2, inter=None, parallel=False):
    so = ort.SessionOptions(); so.intra_op_num_threads = intra; so.graph_optimization_level = level
    if inter: so.inter_op_num_threads = inter
    if parallel: so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    return ort.InferenceSession(G, so, providers=['CPUExecutionProvider'])
configs = {
  'all, intra 2 (actprm)': mk(),
  'extended, intra 2': mk(L.ORT_ENABLE_EXTENDED),
  'basic, intra 2': mk(L.ORT_ENABLE_BASIC),
  'disabled, intra 2': mk(L.ORT_DISABLE_ALL),
  'all, intra 1': mk(intra=1),
  'all, intra 2, parallel inter 2': mk(inter=2, parallel=True),
  'all, intra 1, parallel inter 2': mk(intra=1, inter=2, parallel=True),
}
times = {k: [] for k in configs}
for r in range(3):
    for k, s in configs.items():
        times[k].append(run(s, 1)[0])
base = np.median(times['all, intra 2 (actprm)'])
for k, t in times.items():
    print(f'{k:34s} {np.median(t):6.0f} tok/s  x{np.median(t)/base:.2f}  (min {min(t):.0f} max {max(t):.0f})', flush=True)
