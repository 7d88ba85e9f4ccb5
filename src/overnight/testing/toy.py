"""Task repositories for tests and benchmarks: a minimal task of the test's own, and the
built-in toy task with its overnight.toml changed (noise, sleep, a counted re-score).

Nothing is mocked: each is a real committed git repository whose candidates are real Python
programs. The toy's loss is a known function of the constants in its train.py plus seeded
noise (sd TOY_NOISE, 0.002 as shipped): relu->gelu is 0.02 better, USE_NORM=True 0.01 better.
"""

from __future__ import annotations

import importlib.util
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


def counted_toy(path: Path, count: Path, sleep: float = 0.0, noise: str = "0.002", slow_baseline: float = 0.0) -> Path:
    """The toy task whose protected rescore first appends its run directory's name to `count`
    (then sleeps `sleep` seconds), and whose baseline's train.py sleeps `slow_baseline` seconds."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    if slow_baseline:
        train = path / "train.py"
        train.write_text(train.read_text().replace("from evaluate", SLOW.format(slow_baseline), 1))
    spec = path / "overnight.toml"
    text = spec.read_text()
    assert TOY_RESCORE in text
    wrapped = (
        f'rescore   = "echo $(basename $(dirname $OVERNIGHT_RESCORE)) >> {count} && sleep {sleep:g} && '
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
        "    import json, os\n    json.dump({'val_loss': 0.5 + 0.01 * int(os.environ['OVERNIGHT_SEED']),"
        " 'training_seconds': 0.1}, open(os.environ['OVERNIGHT_RESULT'], 'w'))",
    )
