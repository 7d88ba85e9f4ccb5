"""Constants whose value only reaches a report are not knobs (overnight.knob_uses): the
following of each name's uses, init's written overnight.toml, and what stays a knob."""

from __future__ import annotations

import textwrap
import tomllib

from overnight import gitops
from overnight.adopt import inspect_repo
from overnight.adopt_toml import render
from overnight.knob_uses import report_only
from overnight.knobs import discover
from overnight.testing.autoresearch import write_generic

TRAIN = textwrap.dedent(
    """\
    import math
    import os

    LEARNING_RATE = 0.01      # used by the training
    PEAK_FLOPS = 989.5e12     # only for MFU, printed
    PEAK_DICT_GPU = 312e12    # only through a local name into report()
    LOG_EVERY = 10            # decides when to print: a condition
    WARMUP = 0.1              # through math.log into the schedule
    DEPTH = 4                 # passed to a function

    def build(depth):
        return depth

    def report(**figures):
        return figures

    model = build(DEPTH)
    lr = LEARNING_RATE * math.exp(math.log(WARMUP))
    optimizer = build(lr)  # reaches the training: an argument of the script's own function
    for step in range(3):
        loss = lr * step
        mfu = 100 * 6 * 1e6 / 0.5 / PEAK_FLOPS
        if step % LOG_EVERY == 0:
            print(f"step {step} loss {loss:.3f} mfu {mfu:.1f}%")
    steady = 100 * 6e6 / PEAK_FLOPS if PEAK_FLOPS else 0.0
    print(f"mfu_percent: {steady:.2f}")
    peak = next((v for v in [PEAK_DICT_GPU] if v), 0.0)
    report(mfu_percent=100 / peak if peak else 0.0, lr=lr)
    """
)


def test_only_the_constants_that_reach_nothing_but_a_report_are_found():
    found = report_only({"train.py": TRAIN}, "val_loss")
    assert set(found) == {("train.py", "PEAK_FLOPS"), ("train.py", "PEAK_DICT_GPU")}
    assert "print()" in found[("train.py", "PEAK_FLOPS")] and "report()" in found[("train.py", "PEAK_DICT_GPU")]


def test_a_report_only_constant_is_not_a_knob_unless_declared():
    names = {k.name for k in discover({"train.py": TRAIN}, metric="val_loss")}
    assert "PEAK_FLOPS" not in names and "PEAK_DICT_GPU" not in names
    assert {"LEARNING_RATE", "LOG_EVERY", "WARMUP", "DEPTH"} <= names
    declared = discover(
        {"train.py": TRAIN}, {"PEAK_FLOPS": {"low": 1e12, "high": 1e15, "log": True}}, metric="val_loss"
    )
    assert "PEAK_FLOPS" in {k.name for k in declared}  # the user's word wins


def test_a_name_another_file_reads_or_that_is_never_read_here_is_kept():
    config = "LR = 0.1\nPEAK = 5.0\nprint(PEAK)\n"
    train = "from config import LR, PEAK\nopt = make(LR * PEAK)\n"
    assert report_only({"config.py": config, "train.py": train}, "val_loss") == {}
    assert report_only({"config.py": "LR = 0.1\n"}, "val_loss") == {}


def test_a_constant_that_reaches_the_printed_metric_is_a_knob():
    """A generic script prints its metric: a value reaching that print changes the result."""
    source = "LR = 0.1\nPEAK = 2.0\nloss = 3 * LR\nprint(f'val_loss: {loss}')\nprint(f'mfu {1 / PEAK}')\n"
    assert set(report_only({"t.py": source}, "val_loss")) == {("t.py", "PEAK")}
    assert report_only({"t.py": source}, "") == {}  # no metric known: nothing is left out


def test_init_leaves_a_printed_constant_out_with_its_reason(tmp_path):
    root = write_generic(tmp_path / "g")
    main = (root / "main.py").read_text()
    main = main.replace("DROPOUT = 0.1", "DROPOUT = 0.1\nPEAK_FLOPS = 1e12  # for MFU")
    main = main.replace("    time.sleep(", '    print(f"mfu {1e9 / PEAK_FLOPS:.3f}")\n    time.sleep(')
    (root / "main.py").write_text(main)
    gitops.git(root, "commit", "-qam", "mfu")
    found = inspect_repo(root)
    assert "PEAK_FLOPS" not in {k.name for k in found.knobs} and "LEARNING_RATE" in {k.name for k in found.knobs}
    text = render(found)
    assert "PEAK_FLOPS = false  # not searched: only reaches print()" in text
    assert tomllib.loads(text)["knobs"] == {"PEAK_FLOPS": False}


def test_a_task_that_never_reads_the_budget_is_not_screened_and_the_night_says_so_once(cli, tmp_path):
    from overnight.journal import Journal
    from overnight.layout import journal_path
    from overnight.night.config import RunConfig, ignores_budget
    from overnight.records import EventKind
    from overnight.task_load import load_task

    root = write_generic(tmp_path / "g")
    assert ignores_budget(load_task_or_init(cli, root, load_task)) is None  # it reads OVERNIGHT_BUDGET
    main = (root / "main.py").read_text().replace('float(os.environ.get("OVERNIGHT_BUDGET", "1"))', "1.0")
    (root / "main.py").write_text(main)
    gitops.git(root, "commit", "-qam", "no budget read")
    task = load_task(root)
    assert "OVERNIGHT_BUDGET" in ignores_budget(task)
    assert RunConfig().resolved(task).screen is False
    assert RunConfig(screen=True).resolved(task).screen is True  # asked for: the user's word
    for _ in range(2):  # a resumed night does not say it again
        assert cli("run", root, "--experiments", "2", "--tag", "s", "--quiet").exit_code == 0
    events = Journal(journal_path(root)).events("s", EventKind.SCREEN_OFF)
    assert len(events) == 1 and "OVERNIGHT_BUDGET" in events[0]["message"]
    runs = [r for e in Journal(journal_path(root)).experiments("s") for r in e.runs]
    assert runs and not any(r.screen for r in runs)


def load_task_or_init(cli, root, load_task):
    assert cli("init", root, "--budget", "1", "--commit").exit_code == 0
    return load_task(root)
