"""The Ray executor on a real multi-node Ray cluster on loopback (ray.cluster_utils.Cluster:
a head with no CPU, so every run goes to a worker node, and two worker nodes of one CPU).
Runs travel as `git archive` tarballs and are unpacked in temporary folders on the workers;
only the driver writes the journal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from overnight.journal import ExpStatus  # noqa: E402
from overnight.loop import Controller, RunConfig  # noqa: E402

from conftest import write_toy  # noqa: E402
from executors.test_local import check_consistent  # noqa: E402

RUN_FIELDS = ("value", "wall_seconds", "training_seconds", "exit_code", "peak_memory_mb", "log_path", "ended")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def shape(h) -> list:
    """What a journal says, without the numbers that differ run to run, and without the stale
    rule's rebased experiments: whether there are any depends on which of two concurrent runs
    ends first, a race that start-up jitter decides."""
    return [(e.parent_id is None, e.status.final, bool(e.commit_sha), bool(e.diff) or e.parent_id is None,
             sorted({f for r in e.runs for f in RUN_FIELDS if getattr(r, f) is not None}))
            for e in h if "rebased_from" not in e.params]


def test_ray_night_has_the_journal_shape_of_a_local_one(tmp_path, cluster):
    c, _ = cluster
    journals = {}
    for executor in ("local", "ray"):
        root = write_toy(tmp_path / executor, env={"TOY_SLEEP": "0.5", "TOY_NOISE": "0"})
        cfg = RunConfig(tag="t", proposer="random", judge="greedy", experiments=5, slots=2, executor=executor,
                        ray_address=c.address if executor == "ray" else None)
        ctl = Controller(root, cfg)
        ctl.run()
        h = ctl.journal.experiments("t")
        check_consistent(root, "t", h)
        journals[executor] = (root, h)
    (_, local), (root, remote) = journals["local"], journals["ray"]
    assert shape(remote) == shape(local)
    runs = [r for e in remote for r in e.runs]
    assert {r.slot for r in runs} == {"ray-0", "ray-1"}
    nodes = {r.node for r in runs}
    assert len(nodes) == 2 and all("/" in n for n in nodes), nodes  # ip/node-id, two worker nodes
    for r in runs:  # the logs came back to the driver
        assert Path(r.log_path).is_relative_to(root / ".overnight") and "val_loss" in Path(r.log_path).read_text()
    # Re-scored on the worker, inside every run (its run directory does not outlive the task).
    assert all(r.rescored == r.value for r in runs if r.status == "ok")
    assert not ray.is_initialized()  # the executor that connected also disconnected


def _toy_trainings() -> list:
    """This test's toy training processes (TOY_SLEEP=3 in their environment)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "train.py" in " ".join(p.info["cmdline"] or []) and p.environ().get("TOY_SLEEP") == "3":
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_node_removed_mid_run_loses_nothing(tmp_path, cluster):
    c, workers = cluster
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "3"})
    # budget 3: the toy's 3 s of pretend training is within it (the harness checks the budget).
    cfg = RunConfig(tag="t", proposer="random", judge="greedy", experiments=4, slots=2, executor="ray",
                    ray_address=c.address, budget=3)
    box = {}

    def night():
        try:
            ctl = Controller(root, cfg)
            box["controller"] = ctl
            ctl.run()
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    thread = threading.Thread(target=night)
    thread.start()
    deadline = time.monotonic() + 120
    while True:  # both worker nodes busy with candidates: removing either kills a run
        ctl = box.get("controller")
        busy = ctl and [r for e in ctl.journal.experiments("t") if e.parent_id for r in e.runs
                        if r.status == "running"]
        if busy and len(busy) == 2:
            break
        assert thread.is_alive() and time.monotonic() < deadline, box
        time.sleep(0.1)
    # The journal says "running" when a run is submitted; on a loaded machine the Ray task may
    # still be starting. Wait until both runs' training processes exist before the cut.
    while len(_toy_trainings()) < 2:
        assert thread.is_alive() and time.monotonic() < deadline, box
        time.sleep(0.1)
    time.sleep(1.0)
    c.remove_node(workers[1])
    c.add_node(num_cpus=1)  # a replacement joins, as an autoscaler would bring one
    thread.join(240)
    assert not thread.is_alive() and "error" not in box, box
    h = box["controller"].journal.experiments("t")
    check_consistent(root, "t", h)
    lost = [(e, r) for e in h for r in e.runs if r.status == "interrupted"]
    assert len(lost) == 1, [(e.id, r.status, r.error) for e in h for r in e.runs]
    e, r = lost[0]
    again = [x for x in e.runs if x.status == "ok" and x.seed == r.seed and x.id > r.id]
    assert len(again) == 1 and again[0].node != r.node or again  # ran again, with its seed
    assert e.status.final and box["controller"].journal.events("t", "requeued")
    assert sum(x.status == ExpStatus.KEPT for x in h if x.parent_id is None) == 1
