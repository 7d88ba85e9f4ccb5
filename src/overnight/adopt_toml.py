"""The `overnight.toml` that `overnight init` writes into an existing repository (adopt.py finds
what goes in it): every field with the reason it has its value, checked by the same loader as
a hand-written one before it is written, and committed only when the user asks (`--commit`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from overnight import gitops
from overnight.adopt import Found
from overnight.errors import OvernightError
from overnight.task_load import SPEC_FILE, load_task


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, str) and "'" not in v and "\n" not in v and "\\" in v:
        return f"'{v}'"  # a literal string: a regex reads as written
    return json.dumps(v)  # a TOML basic string is a JSON string


def _lines(rows: list[tuple[str, object, str]]) -> list[str]:
    width = max(len(k) for k, _, _ in rows)
    out = []
    for key, value, why in rows:
        line = f"{key:<{width}} = {_value(value)}"
        out.append(f"{line}  # {why}" if why else line)
    return out


def render(found: Found) -> str:
    """The file's text: [task], [metric], [limits] and a commented [knobs]."""
    why = found.why
    head = [
        f"# Written by `overnight init` for this repository ({found.layout} layout: {why['layout']}).",
        "# Each value is a guess with its reason beside it: read them and fix what is wrong",
        "# (every field: docs/task-spec.md). `overnight doctor` checks the machine before a night.",
        "",
        "[task]",
    ]
    task = [
        ("command", found.command, why.get("command", "")),
        ("editable", found.editable, why.get("editable", "")),
        ("protected", found.protected, why.get("protected", "")),
        ("budget", found.budget, why.get("budget", "")),
    ]
    if found.fixed_budget:
        task.append(
            (
                "fixed_budget",
                True,
                "the protected code sets the budget, not OVERNIGHT_BUDGET: no short screen runs, no --budget",
            )
        )
    if found.timeout is not None:
        task.append(("timeout", found.timeout, why.get("timeout", "")))
    metric = [
        ("name", found.metric, why.get("metric", "")),
        ("goal", found.goal, why.get("goal", "")),
        ("source", "stdout", "read from what the run prints (a candidate could print a false value: see below)"),
        ("pattern", found.pattern, "the last match in the output is the run's value"),
    ]
    text = head + _lines(task) + ["", "[metric]"] + _lines(metric)
    text += [
        "# A metric read from the output trusts the code that prints it. For a metric no candidate",
        "# can fake, let protected code write {name: value} as JSON to $OVERNIGHT_RESULT and set",
        '# source = "result-file" (docs/task-spec.md).',
    ]
    if found.overhead is not None:
        text += ["", "[limits]"] + _lines([("overhead", found.overhead, why.get("overhead", ""))])
    text += ["", "[knobs]"] + _knob_comment(found)
    for name, reason in sorted(found.idle.items()):  # said, and frozen: a hand-edit can give it a range
        text.append(f"{name} = false  # not searched: {reason}")
    return "\n".join(text) + "\n"


def _knob_comment(found: Found) -> list[str]:
    if not found.knobs:
        return ["# (no UPPER_CASE constants in the editable files: nothing for the optuna proposer to search)"]
    out = [
        f"# The optuna proposer searches these constants of {', '.join(found.editable)}, each in a range",
        "# inferred around its value. Freeze one with `NAME = false`; set a range with",
        "# `NAME = {low = 1e-4, high = 1e-2, log = true}` or choices with `NAME = [1, 2, 4]`.",
    ]
    for k in found.knobs:
        if k.kind == "cat":
            space = "one of " + ", ".join(repr(c) for c in k.choices)
        elif k.kind == "pow2":
            space = f"2**{k.low:g} … 2**{k.high:g}"
        else:
            space = f"{k.low:g} … {k.high:g}" + (" (log)" if k.log else "")
        out.append(f"#   {k.name:<24} {k.default!r:<14} {space}")
    return out


def write_spec(root: Path, found: Found, *, force: bool, commit: bool) -> str | None:
    """Write (and with `commit`, commit) overnight.toml; the commit's sha, or None."""
    path = root / SPEC_FILE
    if path.exists() and not force:
        raise OvernightError(f"{path} exists — pass --force to replace it (the old one is then lost unless committed)")
    dirty = gitops.dirty_files(root, tuple(found.editable + found.protected))
    if dirty:
        raise OvernightError(
            f"uncommitted changes in {', '.join(dirty)} — commit or stash them first (a night starts from HEAD)"
        )
    old = path.read_bytes() if path.exists() else None
    path.write_text(render(found))
    try:
        load_task(root)  # the same checks as a hand-written file; a bad guess is never left behind
    except OvernightError:
        if old is None:
            path.unlink()
        else:
            path.write_bytes(old)
        raise
    if not commit:
        return None
    gitops.git(root, "add", "--", SPEC_FILE)
    message = f"overnight init: {SPEC_FILE} ({found.layout} layout)"
    gitops.git(root, "commit", "-q", "-m", message, "--", SPEC_FILE, env=_user_identity(root))
    return gitops.head(root)


def _user_identity(root: Path) -> dict[str, str]:
    """The user's own git identity for their commit; overnight's where they have none set."""
    env = {}
    for key, var in (("user.name", "NAME"), ("user.email", "EMAIL")):
        for role in ("AUTHOR", "COMMITTER"):
            value = os.environ.get(f"GIT_{role}_{var}") or gitops.git(root, "config", key, check=False).strip()
            if value:
                env[f"GIT_{role}_{var}"] = value
    return env
