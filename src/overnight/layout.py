"""Every path under `.overnight/`, the harness's state folder in the task repository.

    .overnight/
      journal.db                       the journal (SQLite, WAL)
      optuna.db                        the knob proposers' study (one per tag)
      heldout/<key>.bin                the held-out slice (run/heldout_store.py)
      worktrees/<tag>-<exp>-<run>      a run's checkout (removed when the run ends)
      worktrees/<tag>-setup            the task's setup checkout
      worktrees/<tag>-verify-<label>-<seed>
      <tag>/controller.lock            one controller per tag (night/lock.py)
      <tag>/runs/<exp>-<run>/          a run's directory: log, result, saved weights
      <tag>/verify/<label>-<seed>/     verify's and ablate's runs
      <tag>/agent/<n>/                 the agent proposer's transcripts
      <tag>/setup.txt                  the task's setup log
      <tag>/results.tsv, report.md, progress.png

One module owns the formulas, so a path written by one part is found by every other (the
runner derives a run's tag from its directory; the executor on a Ray node rebuilds it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    """The built-in task's data and compile cache, outside every repository. prepare.py reads the
    same variable itself (task code runs without the harness installed, so it cannot import
    this); a run gets it resolved as OVERNIGHT_CACHE, and `$OVERNIGHT_CACHE` in
    `limits.sandbox_writable` means it."""
    return Path(os.environ.get("OVERNIGHT_CACHE") or Path.home() / ".cache" / "overnight")


STATE_DIR = ".overnight"
JOURNAL = "journal.db"


def state_dir(root: Path) -> Path:
    """`.overnight/` of the repository at `root` (not created)."""
    return Path(root) / STATE_DIR


def journal_path(root: Path) -> Path:
    return state_dir(root) / JOURNAL


def optuna_db(state: Path) -> Path:
    return Path(state) / "optuna.db"


def heldout_dir(root: Path) -> Path:
    return state_dir(root) / "heldout"


def worktrees(state: Path) -> Path:
    return Path(state) / "worktrees"


def tag_of_run_dir(run_dir: Path) -> Path | None:
    """The tag folder of a night's run directory (`<tag>/runs/<exp>-<run>`), else None (verify)."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == "runs" else None


@dataclass(frozen=True)
class TagPaths:
    """The paths of one tag's night under `state` (`.overnight/` of the repository)."""

    state: Path
    tag: str

    @property
    def folder(self) -> Path:
        return self.state / self.tag

    @property
    def lock(self) -> Path:
        return self.folder / "controller.lock"

    @property
    def results_tsv(self) -> Path:
        return self.folder / "results.tsv"

    @property
    def setup_log(self) -> Path:
        return self.folder / "setup.txt"

    @property
    def setup_worktree(self) -> Path:
        return worktrees(self.state) / f"{self.tag}-setup"

    def run_dir(self, exp_id: int, run_id: int) -> Path:
        return self.folder / "runs" / f"{exp_id}-{run_id}"

    def run_worktree(self, exp_id: int, run_id: int) -> Path:
        return worktrees(self.state) / f"{self.tag}-{exp_id}-{run_id}"

    def verify_dir(self, label: str, seed: int) -> Path:
        return self.folder / "verify" / f"{label}-{seed}"

    def verify_worktree(self, label: str, seed: int) -> Path:
        return worktrees(self.state) / f"{self.tag}-verify-{label}-{seed}"

    def agent_dir(self, number: int) -> Path:
        return self.folder / "agent" / f"{number:04d}"

    def worktree_names(self) -> re.Pattern:
        """This tag's run and setup worktree names (swept on resume), as a pattern."""
        return re.compile(re.escape(self.tag) + r"-(\d+-\d+|setup)")
