"""The `toy` task: a sub-second program whose metric is a known function of its constants
plus Gaussian noise of a configurable size. For tests, benchmarks, and seeing the loop work in
ten seconds. `evaluate.py` holds the true function (`true_loss`) and the known optimum.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from overnight.errors import OvernightError

FILES = ("train.py", "evaluate.py", "overnight.toml", "program.md")
HERE = Path(__file__).parent


def write(dest: Path, preset: str | None = None, data: str | None = None) -> None:
    if preset not in (None, "cpu", "gpu"):
        raise OvernightError(f"unknown preset {preset!r} — choose cpu or gpu")
    if data is not None:
        raise OvernightError("the toy task has no data — drop --data, or use --task nanogpt")
    for name in FILES:
        shutil.copyfile(HERE / name, dest / name)
