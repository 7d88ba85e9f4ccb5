"""The Ray executor on a loopback cluster whose nodes declare GPUs (two worker nodes of two
each; Ray's GPU accounting needs no real device): each run is given one GPU by Ray, and so is
its re-score, a second task on the run's node that asks for what a run asks: a GPU no run is
timing on (the run's own GPU may be another run's by then)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from overnight.judges.noise import NoiseSettings  # noqa: E402
from overnight.night.config import RunConfig  # noqa: E402
from overnight.night.controller import Controller  # noqa: E402
from overnight.records import ExpStatus  # noqa: E402
from overnight.testing.toy import DEFAULT_TOML, RESULT_HELPER  # noqa: E402

TRAIN = """\
import os
from evaluate import report
print("cuda=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
report(score=1.0 + int(os.environ["OVERNIGHT_SEED"]) / 100)
"""
# The protected re-score: the run's own score again, and the device it was given.
EVALUATE = (
    RESULT_HELPER
    + """
if __name__ == "__main__":
    print("cuda=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    report(score=json.load(open(os.environ["OVERNIGHT_RESCORE"]))["score"])
"""
)


@pytest.fixture(scope="module")
def gpu_cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        c.add_node(num_cpus=2, num_gpus=2)
    c.wait_for_nodes()
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def test_the_re_score_gets_a_gpu_of_its_own(task_repo, gpu_cluster):
    toml = DEFAULT_TOML.replace("budget = 1", 'budget = 1\nrescore = "{python} evaluate.py"')
    root = task_repo(TRAIN, toml=toml, evaluate=EVALUATE)
    ctl = Controller(
        root,
        RunConfig(
            tag="t",
            proposer="random",
            judge="noise",
            experiments=1,
            executor="ray",
            ray_address=gpu_cluster.address,
            noise=NoiseSettings(baseline_runs=4),
        ),
    )
    ctl.run()
    base = ctl.journal.experiments("t")[0]
    assert base.status == ExpStatus.KEPT, base.reason
    assert {r.slot for r in base.runs} == {f"ray-{i}" for i in range(4)}  # one slot per GPU of the cluster
    # The kept baseline's first run is re-scored (the check of the task's re-score command);
    # a keep's runs the same way (tests/executors/test_ray.py): on the node it ran on, with a
    # GPU Ray gave it (the CUDA_VISIBLE_DEVICES of its worker, not the run's copied over).
    checked = [r for r in base.runs if r.rescored is not None]
    assert [r.id for r in checked] == [base.runs[0].id] and all(r.status == "ok" for r in base.runs)
    for r in checked:
        assert r.rescored == r.value
        run_dir = Path(r.log_path).parent
        ran_on = re.findall(r"cuda=(\S+)", Path(r.log_path).read_text())
        rescored_on = re.findall(r"cuda=(\S+)", (run_dir / "rescore.txt").read_text())
        assert ran_on in (["0"], ["1"]), ran_on  # Ray gave the run one of its node's two GPUs
        assert rescored_on in (["0"], ["1"]), rescored_on  # and the re-score one of its own
    ctl.journal.close()
