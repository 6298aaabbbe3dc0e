"""Timed jobs for benches/python_module.rs, run with .deps/python/bin/python (so `import actprm` is the
module ./setup.sh python built). Prints one JSON object: seconds per phase and rows.

    score.py model MODEL|- INPUT THREADS         Model(...).score(pyarrow table of INPUT)
    score.py ray MODEL|- INPUT THREADS NODES     Ray Data map_batches(actprm.ray.Scorer) on a
                                                 loopback cluster of NODES one-CPU nodes
"""

import json
import sys
import time

started = time.perf_counter()
import pyarrow.dataset as pads  # noqa: E402

import actprm  # noqa: E402

mode, model, source, threads = sys.argv[1:5]
model = None if model == "-" else model
threads = int(threads)
table = pads.dataset(source, format="parquet").to_table()
loaded = time.perf_counter()

if mode == "model":
    scorer = actprm.Model(model, threads=threads)
    opened = time.perf_counter()
    scored = scorer.score(table)
    done = time.perf_counter()
    print(json.dumps({
        "rows": scored.num_rows,
        "import_and_read_s": loaded - started,
        "open_s": opened - loaded,
        "score_s": done - opened,
        "total_s": done - started,
    }))
elif mode == "ray":
    import ray
    import ray.data
    from ray.cluster_utils import Cluster

    import actprm.ray

    nodes = int(sys.argv[5])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    up = time.perf_counter()
    ds = ray.data.from_arrow(table).repartition(16)
    scored = ds.map_batches(
        actprm.ray.Scorer,
        fn_constructor_kwargs={"path": model, "threads": threads},
        batch_format="pyarrow",
        batch_size=1000,
        concurrency=nodes,
        num_cpus=1,
    ).materialize()
    done = time.perf_counter()
    rows = scored.count()
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps({
        "rows": rows,
        "cluster_start_s": up - loaded,
        "job_s": done - up,
        "total_s": done - started,
    }))
else:
    sys.exit(f"unknown mode {mode}")
