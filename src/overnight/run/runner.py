"""Re-exports for night/*.py while it moves to the modules that now hold these names: the run
(execute.py), its process (process.py), its outcome (outcome.py), the re-score and the held-out
score (scoring.py), the records (overnight.records). Goes when night/ imports from those."""

from overnight.records import RunRequest, RunResult, RunStatus  # noqa: F401
from overnight.run.execute import execute, protected_hashes, prune_run_dir, run_checkout, task_env  # noqa: F401
from overnight.run.outcome import read_metric  # noqa: F401
from overnight.run.process import TAG_MARKER_VAR, kill_tag_survivors, run_process, tag_mark  # noqa: F401
from overnight.run.scoring import heldout_score, rescore, rescore_checkout, rescore_run  # noqa: F401

_run_process = run_process  # night/setup.py's name for it
