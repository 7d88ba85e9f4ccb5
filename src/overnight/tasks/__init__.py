"""Built-in tasks, written out as new git repositories by `overnight init`.

Each built-in task is a subpackage with a `write(dest, preset, data)` function that writes the
task's files into an empty folder `dest` (the CLI then makes the initial git commit). Adding a
task is one new subpackage and one line in BUILTIN.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from overnight.errors import OvernightError

BUILTIN = ("nanogpt", "toy")


def write_task(name: str, dest: Path, preset: str | None = None, data: str | None = None) -> None:
    if name not in BUILTIN:
        raise OvernightError(f"unknown task {name!r} — choose one of: {', '.join(BUILTIN)}")
    module = importlib.import_module(f"overnight.tasks.{name}")
    module.write(Path(dest), preset=preset, data=data)
