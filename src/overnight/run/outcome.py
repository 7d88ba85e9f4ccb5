"""What a finished process means: its `ProcessOutcome` and its files turned into a `RunResult`.

The metric comes only from the configured source (`metric.source`); with `result-file`
nothing the candidate prints is trusted, and the log's `---` block is kept for display only
(`RunResult.printed`). The budget is checked here (over -> `over-budget`): wall time by the
harness's own clock, training time as the result reports it. A watched file opened while the
process ran makes it `reads-heldout` (`reads_heldout`).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from overnight.records import RunResult, RunStatus
from overnight.run import runfiles, sandbox
from overnight.run.process import ProcessOutcome
from overnight.run.summary import parse_summary
from overnight.run.watch import Watch
from overnight.task import TaskSpec

LOG_TAIL_LINES = 40


def read_metric(task: TaskSpec, log_text: str, result_path: Path) -> tuple[float | None, dict, str]:
    """(value, result object, error) from the configured source only."""
    if task.metric.source == "stdout":
        matches = re.findall(task.metric.pattern, log_text, re.MULTILINE)
        if not matches:
            return None, {}, "no line matching metric.pattern in the output"
        raw = matches[-1] if isinstance(matches[-1], str) else matches[-1][0]
        try:
            return float(raw), {}, ""
        except ValueError:
            return None, {}, f"metric text {raw!r} is not a number"
    try:
        data = json.loads(runfiles.read_capped(result_path))
    except FileNotFoundError:
        return None, {}, "no result file was written"
    except runfiles.TrapError as exc:
        return None, {}, f"result file refused: {exc}"
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the parser
        return None, {}, f"result file is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not isinstance(data, dict) or task.metric.name not in data:
        return None, data if isinstance(data, dict) else {}, f"result file has no {task.metric.name!r}"
    try:
        return float(data[task.metric.name]), data, ""
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        return None, data, f"{task.metric.name} in the result file is not a number"


# The training budget's figures a task's protected code may write beside its metric (nanogpt's
# TrainingBudget.summary), copied into the run's summary: the steps clock's costs in seconds per
# token (`cost` is what every later run of the commit is given), and the seconds it measured.
BUDGET_FIGURES = ("clock", "cost", "cost_ref", "measured_cost", "measured_seconds")


def judge_outcome(
    task: TaskSpec, out: ProcessOutcome, log_path: Path, result_path: Path, cores: int | None = None
) -> RunResult:
    """The run's result from how its process ended, its log and its result file; `cores` (the
    slot's) bounds the CPU time it may use (None: this machine's)."""
    tail = _tail(log_path)
    res = RunResult(
        RunStatus.OK,
        exit_code=out.exit_code,
        wall_seconds=out.wall,
        peak_memory_mb=out.peak_mb,
        log_path=str(log_path),
        log_tail=tail,
    )
    if out.cpu is not None:
        res.summary["cpu_seconds"] = round(out.cpu, 3)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller"
        return res
    if out.timed_out:
        res.status, res.error = RunStatus.TIMEOUT, f"killed at the hard timeout ({task.timeout:g} s)"
        return res
    if out.killed_for == "memory":
        res.status = RunStatus.OOM
        res.error = f"killed: its processes used over limits.memory_mb ({task.limits.memory_mb:g} MB)"
        return res
    if out.killed_for == "disk":
        res.status = RunStatus.CRASH
        res.error = f"killed: free disk space fell below limits.disk_reserve_mb ({task.limits.disk_reserve_mb:g} MB)"
        return res
    log_text = tail
    if task.metric.source == "stdout":
        try:  # the log is the harness's own file (created fresh, capped by limits.log_mb)
            log_text = runfiles.read_capped(log_path, int(task.limits.log_mb * 2**20) + 4096).decode(errors="replace")
        except OSError:
            pass
    res.printed = parse_summary(tail).values
    value, data, err = read_metric(task, log_text, result_path)
    res.training_seconds = _float_or_none(data.get("training_seconds", res.printed.get("training_seconds")))
    for key in BUDGET_FIGURES:
        figure = data.get(key)
        if key == "clock" and isinstance(figure, str):
            res.summary[key] = figure[:20]
        elif key != "clock" and (number := _float_or_none(figure)) is not None and math.isfinite(number) and number > 0:
            res.summary[key] = number
    phases = data.get("phases")  # where the run's own time went, by phase (nanogpt's prepare.phases)
    if isinstance(phases, dict):
        kept = {str(k)[:20]: n for k, v in list(phases.items())[:12] if (n := _float_or_none(v)) is not None}
        res.summary["phases"] = {k: n for k, n in kept.items() if math.isfinite(n)}
    if data.get("peak_memory_mb") is not None:
        # The task's own figure (e.g. GPU memory) is more precise than sampled RSS.
        res.peak_memory_mb = _float_or_none(data["peak_memory_mb"]) or res.peak_memory_mb
    elif task.metric.source == "stdout":  # the printed summary is the task's report (autoresearch's peak_vram_mb)
        printed = res.printed.get("peak_memory_mb", res.printed.get("peak_vram_mb"))
        res.peak_memory_mb = _float_or_none(printed) or res.peak_memory_mb
    if out.exit_code != 0:
        res.status, res.error = RunStatus.CRASH, f"exit code {out.exit_code}"
        return res
    if value is None or not math.isfinite(value):
        res.status = RunStatus.INVALID
        res.error = err or f"{task.metric.name} is {value} (not finite)"
        return res
    res.value = value
    over = _over_budget(task, res, cores)
    if over:
        res.status, res.error = RunStatus.OVER_BUDGET, over
    if out.log_dropped:
        res.summary["log_dropped_bytes"] = out.log_dropped
    return res


def reads_heldout(res: RunResult, watch: Watch, when: str) -> bool:
    """Turn `res` into READS_HELDOUT when the watch saw a watched file opened; True then."""
    if watch.unavailable:
        res.summary["watch"] = f"unwatched: {watch.unavailable}"
    if not watch.hits or res.status == RunStatus.INTERRUPTED:
        return False
    res.status, res.value = RunStatus.READS_HELDOUT, None
    res.error = (
        f"held-out data was opened {when} ({'; '.join(watch.hits[:3])}): a run must never read "
        "it (inotify cannot say which process did; every run alive then is discarded)"
    )
    return True


def _over_budget(task: TaskSpec, res: RunResult, cores: int | None = None) -> str:
    """Why the run broke the budget, or ''. Wall and CPU time are the harness's own measures;
    the training time is what the result reports (a candidate that ignores OVERNIGHT_BUDGET
    while the protected code times it is caught there; one that fakes its report, only by wall
    and CPU time), and `measured_seconds` what the protected code measured of it (under the
    steps clock: a run that does more per step than its commit's first run did, which set its
    cost, is caught there)."""
    lim, budget = task.limits, task.budget
    if res.training_seconds is not None and res.training_seconds > lim.training_limit(budget):
        return (
            f"over budget: trained {res.training_seconds:.1f} s, budget {budget:g} s "
            f"(limit {lim.training_limit(budget):.1f} s with tolerance)"
        )
    measured = res.summary.get("measured_seconds")
    if measured is not None and measured > lim.measured_limit(budget):
        return (
            f"over budget: trained {measured:.1f} s by its own measure at the cost per token it was charged, "
            f"budget {budget:g} s (limit {lim.measured_limit(budget):.1f} s: limits.measured_tolerance)"
        )
    if res.wall_seconds > lim.wall_limit(budget):
        return (
            f"over budget: ran {res.wall_seconds:.1f} s of wall time, budget {budget:g} s + "
            f"{lim.wall_limit(budget) - budget:g} s start-up/evaluation (limits.overhead)"
        )
    cpu, cores = res.summary.get("cpu_seconds"), cores or os.cpu_count() or 1
    if cpu is not None and cpu > cores * lim.wall_limit(budget) + CPU_SLACK:
        return (
            f"over budget: used {cpu:.1f} CPU seconds, more than its {cores} core(s) give in budget + "
            f"limits.overhead ({lim.wall_limit(budget):g} s): processes beyond its slot's cores"
        )
    return ""


CPU_SLACK = 5.0  # CPU seconds: rusage granularity, the interpreter's start


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = runfiles.read_capped(path, runfiles.TAIL_CAP, tail=True).decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in data.splitlines() if not line.startswith(sandbox.NOTE)]  # the harness's, not the run's
    # Keep the final newline: the summary parser reads a last line without one as cut off.
    return "\n".join(kept[-lines:]) + ("\n" if data.endswith("\n") else "")


def _float_or_none(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return None
