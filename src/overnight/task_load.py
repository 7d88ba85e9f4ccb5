"""Reading `overnight.toml`: parse it, check every field, build the TaskSpec (task.py).

A missing or wrong field is one clear error naming the field, never a KeyError three calls
later; an unknown one is named with the closest known name.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from overnight.errors import TaskSpecError
from overnight.task import (
    CLOCKS,
    DEFAULT_HELDOUT_GAP,
    DEFAULT_HELDOUT_SHARE,
    MAX_BUDGET,
    Heldout,
    Limits,
    Metric,
    TaskSpec,
)

SPEC_FILE = "overnight.toml"
GOALS = ("minimize", "maximize")
SOURCES = ("result-file", "stdout")
DEFAULT_PATTERN = r"^{name}:\s*([-+0-9.eEinfa]+)"


# The fields each table may hold; anything else is a typo, named with the closest known name.
SECTIONS = ("task", "metric", "knobs", "limits", "heldout")
TASK_FIELDS = ("command", "editable", "protected", "budget", "clock", "timeout", "env", "rescore")
TASK_FIELDS += ("rescore_tolerance", "watch", "pass_env", "setup", "setup_timeout", "fixed_budget")
METRIC_FIELDS = ("name", "goal", "source", "pattern")


def _no_unknown(table: dict, known: tuple | Any, where: str) -> None:
    """An unknown key is an error naming it and the closest known one (`[limit]` -> `limits`)."""
    for key in table:
        if key in known:
            continue
        if where:
            name = f"field {where}.{key}"
        else:
            name = f"section [{key}]" if isinstance(table[key], dict) else f"top-level field {key}"
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        if not close and not where:  # a [task] field written as a section or at the top level
            close = [f"task.{c}" for c in difflib.get_close_matches(key, TASK_FIELDS, n=1, cutoff=0.6)]
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise TaskSpecError(f"{SPEC_FILE}: unknown {name} — {hint}")


def _finite(value: Any) -> bool:
    """A number that is finite as a float (an int of 400 digits is not: float() overflows)."""
    try:
        return math.isfinite(float(value))
    except (OverflowError, TypeError, ValueError):
        return False


def _number(value: Any, where: str, low: float = 0.0, strict: bool = False) -> float:
    """A finite number (not a bool) >= low (> low when strict); else one error naming `where`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = _finite(value) and (value > low if strict else value >= low)
        value = float(value) if ok else value
    if not ok:
        bound = f"{'above' if strict else 'at least'} {low:g}"
        raise TaskSpecError(f"{SPEC_FILE}: {where} must be a finite number {bound}, got {repr(value)[:40]} — fix it")
    return value


def _require(table: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in table:
        raise TaskSpecError(f"{SPEC_FILE}: missing field {where}.{key} — add it (see docs/task-spec.md)")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TaskSpecError(
            f"{SPEC_FILE}: field {where}.{key} has the wrong type ({type(value).__name__}) — see docs/task-spec.md"
        )
    return value


def _paths(table: dict, key: str, root: Path, required: bool) -> tuple[str, ...]:
    if key not in table and not required:
        return ()
    value = _require(table, key, list, "task")
    if not all(isinstance(p, str) and p for p in value):
        raise TaskSpecError(f"{SPEC_FILE}: task.{key} must be a list of file paths")
    for p in value:
        if Path(p).is_absolute() or ".." in Path(p).parts or "\0" in p:
            raise TaskSpecError(f"{SPEC_FILE}: task.{key} entry {p!r} must be a path inside the repository")
    # "./train.py" and "train.py" are one file: git, the protection check and the proposers
    # all compare paths as strings, so every path is kept in its one normal form.
    normal = [PurePosixPath(p).as_posix() for p in value]
    if any(n == "." for n in normal):
        raise TaskSpecError(f"{SPEC_FILE}: task.{key} names the repository itself — name files")
    return tuple(dict.fromkeys(normal))


def load_task(root: Path | str) -> TaskSpec:
    """Read and validate `overnight.toml` in `root`."""
    root = Path(root).resolve()
    data = _read(root)
    _no_unknown(data, SECTIONS, "")
    task = _require(data, "task", dict, "")
    _no_unknown(task, TASK_FIELDS, "task")
    command = _require(task, "command", str, "task")
    if not command.strip():
        raise TaskSpecError(
            f'{SPEC_FILE}: task.command is empty — name the training command, e.g. command = "python train.py"'
        )
    editable, protected = _files(task, root)
    budget, timeout, clock = _budget(task)
    return TaskSpec(
        root=root,
        command=command,
        editable=editable,
        protected=protected,
        budget=budget,
        clock=clock,
        timeout_setting=timeout,
        metric=_metric(data),
        env=_env(task),
        knobs=_knobs(data),
        limits=_limits(data.get("limits", {})),
        heldout=_heldout(data.get("heldout")),
        **_commands(task),
    )


def _read(root: Path) -> dict:
    """overnight.toml of `root` as a dict, or one line saying what is wrong with the file."""
    path = root / SPEC_FILE
    if not path.is_file():
        raise TaskSpecError(f"no {SPEC_FILE} in {root} — run `overnight init DIR` or write one (see docs/task-spec.md)")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TaskSpecError(f"{SPEC_FILE} is not UTF-8 text (byte {exc.start}) — save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskSpecError(f"{SPEC_FILE} is not valid TOML: {exc} — fix the syntax") from None
    return data


def _files(task: dict, root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The editable and the protected files (the spec itself always protected), each a file."""
    editable = _paths(task, "editable", root, required=True)
    if not editable:
        raise TaskSpecError(f"{SPEC_FILE}: task.editable is empty — name the file(s) proposers may change")
    protected = _paths(task, "protected", root, required=False)
    if SPEC_FILE not in protected:
        protected = protected + (SPEC_FILE,)  # the spec itself is never the candidate's to edit
    overlap = set(editable) & set(protected)
    if overlap:
        raise TaskSpecError(f"{SPEC_FILE}: {sorted(overlap)} are both editable and protected — pick one")
    for p in editable + protected:
        if (root / p).is_symlink():  # a run would edit, or the check would hash, another file
            raise TaskSpecError(
                f"{SPEC_FILE}: file {p!r} named in [task] is a symlink (to {os.readlink(root / p)!r}) — "
                "name the file itself"
            )
        if not (root / p).is_file():
            raise TaskSpecError(f"{SPEC_FILE}: file {p!r} named in [task] does not exist in {root}")
    return editable, protected


def _budget(task: dict) -> tuple[float, float | None, str]:
    """The budget in seconds, the timeout setting (None: derived) and the clock."""
    budget = _number(_require(task, "budget", (int, float), "task"), "task.budget (seconds)", strict=True)
    if budget > MAX_BUDGET:
        raise TaskSpecError(f"{SPEC_FILE}: task.budget is {budget:g} s, over a week ({MAX_BUDGET} s) — give seconds")
    timeout = task.get("timeout")
    if timeout is not None:
        timeout = _number(timeout, "task.timeout (seconds)", strict=True)
        if timeout <= budget:
            raise TaskSpecError(f"{SPEC_FILE}: task.timeout ({timeout:g}) must exceed task.budget ({budget:g})")
    clock = task.get("clock", CLOCKS[0])
    if clock not in CLOCKS:
        raise TaskSpecError(
            f"{SPEC_FILE}: task.clock is {repr(clock)[:40]} — use {' or '.join(repr(c) for c in CLOCKS)} "
            '("cpu": training time in CPU seconds, for a CPU shared with other work)'
        )
    return budget, None if timeout is None else float(timeout), clock


def _env(task: dict) -> dict[str, str]:
    env = task.get("env", {})
    if not isinstance(env, dict):
        raise TaskSpecError(f'{SPEC_FILE}: task.env must be a table of NAME = "value"')
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise TaskSpecError(
                f"{SPEC_FILE}: task.env name {key!r} is not a variable name — names may not be empty or hold '=' or NUL"
            )
        if isinstance(value, (dict, list)) or "\0" in str(value):
            raise TaskSpecError(f"{SPEC_FILE}: task.env.{key} must be a plain value without NUL — fix it")
    return {str(k): str(v) for k, v in env.items()}


def _metric(data: dict) -> Metric:
    metric_table = _require(data, "metric", dict, "")
    _no_unknown(metric_table, METRIC_FIELDS, "metric")
    name = _require(metric_table, "name", str, "metric")
    goal = metric_table.get("goal", "minimize")
    if goal not in GOALS:
        raise TaskSpecError(f'{SPEC_FILE}: metric.goal is {goal!r} — use "minimize" or "maximize"')
    source = metric_table.get("source", "result-file")
    if source not in SOURCES:
        raise TaskSpecError(f'{SPEC_FILE}: metric.source is {source!r} — use "result-file" or "stdout"')
    pattern = metric_table.get("pattern", DEFAULT_PATTERN.format(name=re.escape(name)))
    if not isinstance(pattern, str):
        raise TaskSpecError(
            f"{SPEC_FILE}: metric.pattern must be a regex string, got {type(pattern).__name__} — write it in quotes"
        )
    try:
        re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise TaskSpecError(f"{SPEC_FILE}: metric.pattern is not a valid regex ({exc})") from None
    return Metric(name, goal, source, pattern)


def _knobs(data: dict) -> dict:
    knobs = data.get("knobs", {})
    if not isinstance(knobs, dict):
        raise TaskSpecError(f"{SPEC_FILE}: [knobs] must be a table")
    for knob_name, spec in knobs.items():
        _check_knob(knob_name, spec)
    return knobs


def _commands(task: dict) -> dict:
    """The re-score and setup commands and the task's other optional fields, as TaskSpec's."""
    rescore = task.get("rescore")
    if rescore is not None and not (isinstance(rescore, str) and rescore.strip()):
        raise TaskSpecError(f"{SPEC_FILE}: task.rescore must be a command line")
    tol = _number(task.get("rescore_tolerance", 1e-6), "task.rescore_tolerance")
    setup = task.get("setup")
    if setup is not None and not (isinstance(setup, str) and setup.strip()):
        raise TaskSpecError(f'{SPEC_FILE}: task.setup must be a command line, e.g. setup = "python prepare.py --setup"')
    setup_timeout = _number(task.get("setup_timeout", 1800), "task.setup_timeout (seconds)", strict=True)
    pass_env = task.get("pass_env", [])
    if not isinstance(pass_env, list) or not all(isinstance(n, str) and n for n in pass_env):
        raise TaskSpecError(
            f'{SPEC_FILE}: task.pass_env must be a list of environment variable names, e.g. pass_env = ["HF_TOKEN"]'
        )
    fixed_budget = task.get("fixed_budget", False)
    if not isinstance(fixed_budget, bool):
        raise TaskSpecError(f"{SPEC_FILE}: task.fixed_budget must be true or false")
    watch = task.get("watch", [])
    if not isinstance(watch, list) or not all(isinstance(w, str) and w for w in watch):
        raise TaskSpecError(f"{SPEC_FILE}: task.watch must be a list of file paths")
    return {
        "rescore": rescore,
        "rescore_tolerance": float(tol),
        "setup": setup,
        "setup_timeout": float(setup_timeout),
        "pass_env": tuple(pass_env),
        "fixed_budget": fixed_budget,
        "watch": tuple(watch),
    }


def _heldout(table: Any) -> Heldout | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise TaskSpecError(f"{SPEC_FILE}: [heldout] must be a table")
    command = _require(table, "command", str, "heldout")
    _no_unknown(table, ("command", "max_gap", "min_share"), "heldout")
    if not command.strip():
        raise TaskSpecError(
            f"{SPEC_FILE}: heldout.command is empty — name the protected program that builds "
            "and scores the held-out slice, or remove [heldout]"
        )
    gap = _number(table.get("max_gap", DEFAULT_HELDOUT_GAP), "heldout.max_gap")
    share = _number(table.get("min_share", DEFAULT_HELDOUT_SHARE), "heldout.min_share")
    if share > 1:
        raise TaskSpecError(f"{SPEC_FILE}: heldout.min_share must be a number from 0 to 1")
    return Heldout(command.strip(), float(gap), float(share))


def _limits(table: Any) -> Limits:
    if not isinstance(table, dict):
        raise TaskSpecError(f"{SPEC_FILE}: [limits] must be a table")
    known = tuple(Limits.__dataclass_fields__)
    _no_unknown(table, known, "limits")
    for key, value in table.items():
        if key == "sandbox":
            if not isinstance(value, bool) and value != "auto":
                raise TaskSpecError(f'{SPEC_FILE}: limits.sandbox must be true, false or "auto"')
        elif key == "sandbox_writable":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise TaskSpecError(f"{SPEC_FILE}: limits.sandbox_writable must be a list of directories")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not _finite(value) or value < 0:
            raise TaskSpecError(
                f"{SPEC_FILE}: limits.{key} must be a non-negative number, got {repr(value)[:40]} — fix it"
            )
    if "sandbox" in table:  # true/false as "on"/"off", so no caller mistakes "off" for true
        table = {**table, "sandbox": {True: "on", False: "off"}.get(table["sandbox"], "auto")}
    return Limits(
        **{k: (v if isinstance(v, str) else tuple(v) if isinstance(v, list) else float(v)) for k, v in table.items()}
    )


def _check_knob(name: str, spec: Any) -> None:
    """A `[knobs]` entry is `false`, a non-empty list of choices, or {low, high[, log, type]};
    checked here so a typo fails at start-up, not as a traceback in the middle of the night."""
    where = f"{SPEC_FILE}: knobs.{name}"
    if spec is False:
        return
    if isinstance(spec, list) and spec:
        for choice in spec:  # each choice is written into the source as a literal
            if (
                not isinstance(choice, (str, int, float, bool))
                or isinstance(choice, (int, float))
                and not isinstance(choice, bool)
                and not _finite(choice)
            ):
                raise TaskSpecError(
                    f"{where}: choice {choice!r} is not a string, number or boolean — "
                    'list plain values, e.g. ["relu", "gelu"]'
                )
        return
    if not isinstance(spec, dict):
        raise TaskSpecError(f"{where} must be false, a list of choices, or {{low = .., high = ..}}")
    _no_unknown(spec, ("low", "high", "log", "type"), f"knobs.{name}")
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v) for v in (low, high)):
        raise TaskSpecError(f"{where} needs finite numbers low and high — e.g. {{low = 1e-4, high = 1e-2}}")
    if low >= high:
        raise TaskSpecError(f"{where}: low ({low}) must be below high ({high}) — swap them")
    if not isinstance(spec.get("log", False), bool):
        raise TaskSpecError(f"{where}: log must be true or false, got {spec['log']!r} — e.g. log = true")
    if spec.get("log") and low <= 0:
        raise TaskSpecError(f"{where}: a log range needs low > 0 (got {low})")
    if spec.get("type", "int") not in ("int", "float"):
        raise TaskSpecError(f'{where}: type must be "int" or "float"')
