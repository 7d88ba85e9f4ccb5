"""Re-exports for night/*.py while it moves to the modules that now hold these names: the
records (overnight.records), one run (execute.py), process supervision (process.py), the
re-score (scoring.py). Goes when night/ imports from those."""

from overnight.records import RunRequest, RunResult, RunStatus  # noqa: F401
from overnight.run.execute import protected_hashes, prune_run_dir, task_env  # noqa: F401
from overnight.run.process import kill_tag_survivors, run_process  # noqa: F401
from overnight.run.scoring import rescore_run  # noqa: F401

_run_process = run_process  # night/setup.py's name for it
