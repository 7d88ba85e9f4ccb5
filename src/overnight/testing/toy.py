"""Task repositories for tests and benchmarks: a minimal task of the test's own, and the
built-in toy task with its overnight.toml changed (noise, sleep, a counted re-score).

Nothing is mocked: each is a real committed git repository whose candidates are real Python
programs. The toy's loss is a known function of the constants in its train.py plus seeded
noise (sd TOY_NOISE, 0.002 as shipped): relu->gelu is 0.02 better, USE_NORM=True 0.01 better.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
import textwrap
from pathlib import Path

from overnight import gitops, knobs
from overnight.tasks import write_task

# A minimal task: train.py is the candidate, evaluate.py stands in for protected code.
DEFAULT_TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 1

[metric]
name = "score"
goal = "minimize"
source = "result-file"
"""

# Writes the harness-owned result file, as a task's protected evaluation would.
RESULT_HELPER = """\
import json, os

def report(**values):
    with open(os.environ["OVERNIGHT_RESULT"], "w") as f:
        json.dump(values, f)
"""


def make_task_repo(
    path: Path, train: str, toml: str | None = None, files: dict[str, str] | None = None, evaluate: str = RESULT_HELPER
) -> Path:
    """A committed task repository with the given train.py (dedented) and overnight.toml.

    `{python}` in the toml is replaced by this interpreter, so candidates run in the same
    environment as the tests whatever `python` means on PATH.
    """
    path.mkdir(parents=True, exist_ok=True)
    toml = DEFAULT_TOML if toml is None else toml
    (path / "overnight.toml").write_text(textwrap.dedent(toml).replace("{python}", sys.executable))
    (path / "train.py").write_text(textwrap.dedent(train))
    (path / "evaluate.py").write_text(evaluate)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text))
    gitops.init_repo(path, "init")
    return path


def write_toy(path: Path, env: dict[str, str] | None = None, rescore: bool = True) -> Path:
    """The built-in toy task, optionally with [task.env] values changed or without its
    protected re-score (which discards a candidate that pins OVERNIGHT_SEED), committed."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    spec = path / "overnight.toml"
    if not rescore:
        spec.write_text(
            "".join(row for row in spec.read_text().splitlines(keepends=True) if not row.startswith("rescore"))
        )
    for key, value in (env or {}).items():
        lines = spec.read_text().splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{key} ")]
        assert hits, f"{key} not in the toy overnight.toml"
        lines[hits[0]] = f'{key} = "{value}"\n'
        spec.write_text("".join(lines))
    gitops.init_repo(path, "init")
    return path


def make_toy(env: dict[str, str] | None = None, budget: float | None = None) -> Path:
    """For the benchmarks: a fresh toy repository in a temp folder, [task.env] values overridden."""
    root = Path(tempfile.mkdtemp(prefix="overnight-bench-"))
    write_task("toy", root)
    spec = (root / "overnight.toml").read_text()
    for key, value in (env or {}).items():
        spec = re.sub(rf"^{key}\s*=.*$", f'{key} = "{value}"', spec, flags=re.M)
    if budget is not None:
        spec = re.sub(r"^budget\s*=.*$", f"budget    = {budget}", spec, flags=re.M)
    (root / "overnight.toml").write_text(spec)
    gitops.init_repo(root, "toy task")
    return root


def true_loss_at(root: Path, commit: str) -> tuple[float, float]:
    """(the noise-free loss of the constants in `commit`'s train.py, the best possible loss),
    read by parsing, not run."""
    spec = importlib.util.spec_from_file_location("toy_evaluate", root / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    source = gitops.read_file(root, commit, "train.py").decode()
    consts = {name: c.value for name, c in knobs.find_constants(source).items()}
    return evaluate.true_loss(consts), evaluate.BEST_LOSS


def quiet_toy(path: Path, toml_extra: str = "", task_extra: str = "", noise: str = "0", timeout: int = 30) -> Path:
    """The built-in toy task (noise-free by default), with lines added to its overnight.toml."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    spec = path / "overnight.toml"
    text = spec.read_text().replace('TOY_NOISE = "0.002"', f'TOY_NOISE = "{noise}"')
    text = text.replace("timeout   = 30\n", f"timeout   = {timeout}\n" + task_extra)
    spec.write_text(text + toml_extra)
    gitops.init_repo(path, "init")
    return path


# --- a toy whose protected re-score counts itself -------------------------------------------

TOY_RESCORE = 'rescore   = "python evaluate.py --rescore"'
SLOW = "import time\ntime.sleep({:g})\nfrom evaluate"  # .format(seconds): a train.py that sleeps first


def counted_toy(
    path: Path,
    count: Path,
    sleep: float = 0.0,
    noise: str = "0.002",
    slow_baseline: float = 0.0,
    check_sleep: float | None = None,
) -> Path:
    """The toy task whose protected rescore first appends its run directory's name to `count`
    (then sleeps `sleep` seconds; `check_sleep` instead for the baseline's runs, #1, when
    given), and whose baseline's train.py sleeps `slow_baseline` seconds."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    if slow_baseline:
        train = path / "train.py"
        train.write_text(train.read_text().replace("from evaluate", SLOW.format(slow_baseline), 1))
    spec = path / "overnight.toml"
    text = spec.read_text()
    assert TOY_RESCORE in text
    pause = f"sleep {sleep:g}"
    if check_sleep is not None:  # the run directory is <experiment>-<run>: the baseline is #1
        pause = f"case $(basename $(dirname $OVERNIGHT_RESCORE)) in 1-*) sleep {check_sleep:g};; *) {pause};; esac"
    wrapped = (
        f'rescore   = "echo $(basename $(dirname $OVERNIGHT_RESCORE)) >> {count} && {pause} && '
        f'python evaluate.py --rescore"'
    )
    spec.write_text(text.replace(TOY_RESCORE, wrapped).replace('TOY_NOISE = "0.002"', f'TOY_NOISE = "{noise}"'))
    gitops.init_repo(path, "init")
    return path


def rescored(count: Path) -> list[str]:
    """Run directories ("<experiment>-<run>") in the order their re-scores started."""
    return count.read_text().split() if count.exists() else []


def edited_train(root: Path, old: str, new: str) -> str:
    """The task's train.py with `old` (which must occur) replaced by `new`."""
    text = (root / "train.py").read_text()
    assert old in text
    return text.replace(old, new)


def fake_metric(root: Path) -> str:
    """The toy's train.py writing a better val_loss than it trains (varying with the seed, so
    the noise judge counts every run) instead of evaluating."""
    return edited_train(
        root,
        "    train_and_evaluate({k: v for k, v in dict(globals()).items() if k.isupper()})",
        "    import json, os\n    json.dump({'val_loss': 0.5 + 0.01 * (int(os.environ['OVERNIGHT_SEED']) % 7),"
        " 'training_seconds': 0.1}, open(os.environ['OVERNIGHT_RESULT'], 'w'))",
    )


# --- a toy whose every process says when it ran, and on what ------------------------------

# Protected, beside evaluate.py: runs the rest of its command line after `sleep` seconds and
# appends one JSON line to $STAMPS (outside the run directory: the harness never reads it).
STAMP = """\
import json, os, subprocess, sys, time
kind, sleep, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.time()
time.sleep(sleep)
code = subprocess.call(argv)
line = dict(kind=kind, start=start, end=time.time(), gpu=os.environ.get("CUDA_VISIBLE_DEVICES"),
            dir=os.path.dirname(os.environ.get("OVERNIGHT_RESULT", "")))
with open(os.environ["STAMPS"], "a") as f:
    f.write(json.dumps(line) + "\\n")
sys.exit(code)
"""


def stamped_toy(path: Path, stamps: Path, rescore_sleep: float = 1.0, budget: float = 1.0) -> Path:
    """The noise-free toy task whose training (TOY_SLEEP: the whole budget) and protected
    re-score (`rescore_sleep` seconds longer) each append {kind: train|rescore, start, end,
    gpu: CUDA_VISIBLE_DEVICES, dir: the run directory} to `stamps` (see `stamped`)."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    (path / "stamp.py").write_text(STAMP)
    spec = path / "overnight.toml"
    text = spec.read_text()
    for old, new in (
        ('command   = "python train.py"', 'command   = "python stamp.py train 0 python train.py"'),
        (TOY_RESCORE, f'rescore   = "python stamp.py rescore {rescore_sleep:g} python evaluate.py --rescore"'),
        ('protected = ["evaluate.py", ', 'protected = ["evaluate.py", "stamp.py", '),
        ("budget    = 1\n", f"budget    = {budget:g}\n"),
        ('TOY_NOISE = "0.002"', f'TOY_NOISE = "0"\nSTAMPS = "{stamps}"'),
        ('TOY_SLEEP = "0"', 'TOY_SLEEP = "budget"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    spec.write_text(text)
    gitops.init_repo(path, "init")
    return path


def stamped(stamps: Path) -> list[dict]:
    """The processes of a stamped_toy, in the order they ended."""
    return [json.loads(line) for line in stamps.read_text().splitlines()] if stamps.exists() else []


def overlapping(stamps: list[dict], device=lambda s: s["gpu"]) -> list[tuple[dict, dict]]:
    """(re-score, training) pairs whose intervals overlap on the same `device`."""
    trains = [s for s in stamps if s["kind"] == "train"]
    return [
        (r, t)
        for r in stamps
        if r["kind"] == "rescore"
        for t in trains
        if device(r) == device(t) and r["start"] < t["end"] and t["start"] < r["end"]
    ]
