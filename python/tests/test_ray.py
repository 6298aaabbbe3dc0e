"""actprm.ray.Scorer in Ray Data map_batches on a real 2-node Ray cluster on loopback: the same
rows and scores as Model.score in this process."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

try:
    import ray
except ImportError:  # pragma: no cover - the README's test command installs it
    pytest.fail(
        "Ray is missing from this environment: ACTPRM_RAY=1 ./setup.sh python installs it into "
        ".deps/python",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_map_batches_on_two_nodes_gives_the_rows_and_scores_of_one_process(cluster, model, prm800k):
    import ray.data

    import actprm.ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    ds = ray.data.from_arrow(prm800k).repartition(4)
    scored = ds.map_batches(
        actprm.ray.Scorer,
        fn_constructor_kwargs={"threads": 1},
        batch_format="pyarrow",
        batch_size=64,
        concurrency=2,
        num_cpus=1,
    )
    got = pa.Table.from_pylist(scored.take_all()).sort_by("id")
    expected = model.score(prm800k).sort_by("id")
    assert got.num_rows == 353
    assert got.column("id").to_pylist() == expected.column("id").to_pylist()
    assert got.column("first_error").to_pylist() == expected.column("first_error").to_pylist()
    a = np.asarray(pc.list_flatten(got.column("step_mean")).to_numpy(), dtype=np.float64)
    b = np.asarray(pc.list_flatten(expected.column("step_mean")).to_numpy(), dtype=np.float64)
    assert np.max(np.abs(a - b)) <= 1e-6
    # every row came back, none rejected
    assert got.column("reject_reason").null_count == 353
