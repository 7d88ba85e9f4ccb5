"""Helpers shared by the benchmarks that run the toy task."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

from overnight import gitops, knobs
from overnight.tasks import write_task


def make_toy(env: dict[str, str] | None = None, budget: float | None = None) -> Path:
    """A fresh toy task repository in a temp folder, with [task.env] values overridden."""
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


def true_loss_at(root: Path, commit: str) -> float:
    """The noise-free loss of the constants in `commit`'s train.py (read by parsing, not run)."""
    spec = importlib.util.spec_from_file_location("toy_evaluate", root / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    source = gitops.read_file(root, commit, "train.py").decode()
    consts = {name: c.value for name, c in knobs.find_constants(source).items()}
    return evaluate.true_loss(consts), evaluate.BEST_LOSS
