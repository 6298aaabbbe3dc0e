"""actprm's Ray driver: one Ray task per filter unit, each running `actprm filter --ray-unit`.

`actprm filter --ray ADDRESS` plans the units, writes a plan (JSON) and runs this program with
the pinned Ray (`ACTPRM_RAY=1 ./setup.sh`). It talks back by lines that start with `@actprm `
on stdout; everything else it prints is passed on as log lines. The units' outputs and commit
records are written by the `actprm` children themselves, with the same per-unit commit protocol
as a local run, so a task retried after a lost worker or node never duplicates rows.

Usage: python driver.py PLAN.json
"""

import json
import os
import subprocess
import sys
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

# Fast failure detection for the loopback clusters this driver starts (`local:N`): a lost node is
# declared dead after about two seconds instead of Ray's default of about thirty.
LOCAL_HEALTH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 4,
}


def emit(event, **fields):
    fields = {"event": event, "t": round(time.time(), 3), **fields}
    print("@actprm " + json.dumps(fields), flush=True)


@ray.remote(num_cpus=0)
class Attempts:
    """Counts the attempts of each unit. It lives on the driver's node, so tasks report their
    attempts without a folder every node sees (an output in an object store), and a lost worker
    node loses no count."""

    def __init__(self):
        self.counts = {}

    def mark(self, ids):
        for unit in ids:
            self.counts[unit] = self.counts.get(unit, 0) + 1

    def all(self):
        return self.counts


@ray.remote
def run_units(units, plan, attempts):
    """One task: `actprm filter --ray-unit ...` over a few units (the model is opened once)."""
    node = ray.get_runtime_context().get_node_id()
    ip = ray.util.get_node_ip_address()
    ray.get(attempts.mark.remote([unit["id"] for unit in units]))
    env = dict(os.environ)
    env.update(plan["env"])
    # the child exits when this worker is gone (a lost node leaves no process writing)
    env["ACTPRM_RAY_WORKER_PID"] = str(os.getpid())
    # relative -i/-o/--model resolve against the driver's working folder: a node without it
    # would read and write elsewhere, so the task fails (and Ray retries it) instead
    if not os.path.isdir(plan["cwd"]):
        raise RuntimeError(
            f"the driver's working folder {plan['cwd']} does not exist on node {ip}: "
            "filter --ray needs the inputs and the output folder at the same paths on every node"
        )
    cwd = plan["cwd"]
    command = [plan["actprm"], *plan["args"]]
    for unit in units:
        command += ["--ray-unit", unit["spec"]]
    started = time.time()
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise RuntimeError(
            f"actprm exited with {proc.returncode} on {ip}: " + " | ".join(tail)
        )
    seconds = round(time.time() - started, 3)
    return [
        {"unit": u["id"], "node": node, "ip": ip, "seconds": seconds, "task_units": len(units)}
        for u in units
    ]


def alive_nodes():
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def start_local(count, plan):
    """An N-node cluster on this machine, for trying --ray out and for tests."""
    from ray.cluster_utils import Cluster

    cpus = max(plan["num_cpus"], (os.cpu_count() or 1) // count, 1)
    node = {
        "num_cpus": cpus,
        "object_store_memory": 100 * 1024 * 1024,
    }
    # the machine's GPUs are the head node's (Ray finds them there); the other nodes share the
    # same cards, so they get none: N nodes must not each claim the one GPU
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node,
            "include_dashboard": False,
            "_system_config": LOCAL_HEALTH,
        },
    )
    for _ in range(count - 1):
        cluster.add_node(**node, num_gpus=0)
    cluster.wait_for_nodes()
    return cluster


def write_atomic(path, value):
    tmp = path + ".tmp-driver"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    address = plan["address"]
    cluster = None
    if address.startswith("local:"):
        cluster = start_local(int(address.split(":", 1)[1]), plan)
        address = cluster.address
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        run(plan, address)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def run(plan, address):
    units = plan["units"]
    emit("start", units=len(units), nodes=alive_nodes(), address=address)
    options = {
        "num_cpus": plan["num_cpus"],
        "num_gpus": plan["num_gpus"],
        "max_retries": plan["max_retries"],
        "retry_exceptions": True,
    }
    gpus = ray.cluster_resources().get("GPU", 0)
    if plan["num_gpus"] > gpus:
        # Ray would wait forever for a GPU no node has: fail every unit with the reason instead
        error = (
            f"the cluster at {address} has {gpus:g} GPU(s) and --device cuda asks "
            f"{plan['num_gpus']} per task: start nodes with GPUs, or use --device cpu"
        )
        for unit in units:
            emit("failed", unit=unit["id"], error=error)
        write_atomic(
            os.path.join(plan["out"], "ray", plan["manifest"]),
            {"address": address, "units": {}, "failed": {u["id"]: error for u in units}},
        )
        emit("done", units=0, failed=len(units), not_run=0)
        return
    size = plan["units_per_task"]
    tasks = [units[i : i + size] for i in range(0, len(units), size)]
    here = NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False
    )
    counter = Attempts.options(scheduling_strategy=here).remote()
    pending = {run_units.options(**options).remote(t, plan, counter): t for t in tasks}
    done, failed = {}, {}
    last_nodes = -1
    while pending and not failed:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0)
        for ref in ready:
            task = pending.pop(ref)
            try:
                for result in ray.get(ref):
                    done[result["unit"]] = result
                    emit("unit", **result)
            except Exception as e:  # the task failed after its retries
                error = str(e).strip().splitlines()[-1][:2000]
                for unit in task:
                    failed[unit["id"]] = error
                    emit("failed", unit=unit["id"], error=error)
        nodes = alive_nodes()
        if nodes != last_nodes:
            emit("nodes", alive=nodes)
            last_nodes = nodes
    # a unit that failed every retry fails the job: what failed once everywhere (a missing
    # binary or library on the nodes) would fail every unit, so the rest is not started
    for ref in pending:
        ray.cancel(ref, force=True)
    not_run = sum(len(task) for task in pending.values())
    attempts = ray.get(counter.all.remote())
    write_atomic(
        os.path.join(plan["out"], "ray", plan["manifest"]),
        {
            "address": address,
            "units": {
                unit: {**result, "attempts": attempts.get(unit, 1)}
                for unit, result in sorted(done.items())
            },
            "failed": failed,
        },
    )
    emit("done", units=len(done), failed=len(failed), not_run=not_run)


if __name__ == "__main__":
    main()
