"""A knob search that starts where the user is: moves of one constant around the incumbent.

`--knob-search local`. Written for a task whose defaults are already good, where a night's
gains are small changes near them and TPE's random start-up (five or six constants moved at
once across the whole space) scores far worse than the baseline. The night benchmark found the
opposite on the cpu preset at 20 s runs (its model too big for the budget: the gain was in the
shape, which these moves reach last), so the default is TPE from the start (options.py). This
module proposes, for the current incumbent, one constant at
a time: first a coarse step each way (rates ×2 and ÷2, fractions a quarter of their range,
ints ±1 or ×2/÷2, powers of two one power, the other choice of a categorical), learning rates
first and shapes last (the search seed orders knobs of one class), then a fine step (×√2,
an eighth of the range) for the numbers. After a keep, the move that made it is tried again
first (a direction that paid is followed). When every move around the incumbent was tried,
`moves` yields nothing more and the caller searches globally (optuna.py: TPE, which has by
then seen every local result).

What was tried is read from the journal (the experiments proposed on the incumbent, in flight
or decided), so parallel slots and a resumed night never repeat a move.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

from overnight import knobs as knoblib
from overnight.knobs import Knob
from overnight.proposers.base import Context

MOVE_KEY = "_move"  # params of a local move: "NAME x2", "NAME /2", ...
_RATE = re.compile(r"(^|_)(LR|RATE)(_|$)")


def current_values(files: dict[str, str], space: list[Knob]) -> dict[str, Any]:
    """Each knob's value in `files` (a tuple knob's element by its index)."""
    consts = {f: knoblib.find_constants(text) for f, text in files.items() if f.endswith(".py")}
    values = {}
    for k in space:
        c = consts.get(k.file, {}).get(k.constant)
        if c is not None:
            values[k.name] = c.value[k.index] if k.index is not None else c.value
    return values


def written(value: Any) -> str:
    """A value as the rewrite writes it (floats at 4 significant digits): equal text, same move."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _clip(k: Knob, x: float) -> float:
    return min(k.high, max(k.low, x)) if k.low is not None and k.high is not None else x


def steps(k: Knob, value: Any, fine: bool) -> list[tuple[str, Any]]:
    """(label, value) for the moves of `k` from `value`: coarse, or fine."""
    if k.kind == "cat":
        return [] if fine else [(f"= {c!r}", c) for c in k.choices if written(c) != written(value)]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    if k.kind == "pow2":
        e = int(math.log2(value)) if value > 0 else 0
        return [] if fine else [("x2", 2 ** min(e + 1, int(k.high))), ("/2", 2 ** max(e - 1, int(k.low)))]
    if k.kind == "int":
        if fine:
            return []
        up, down = (value * 2, value // 2) if abs(value) >= 4 else (value + 1, value - 1)
        return [("up", int(_clip(k, up))), ("down", int(_clip(k, down)))]
    if k.log and value > 0:
        f = math.sqrt(2) if fine else 2.0
        name = "1.41" if fine else "2"
        return [(f"x{name}", _clip(k, value * f)), (f"/{name}", _clip(k, value / f))]
    span = (k.high - k.low) / (8 if fine else 4) if k.low is not None and k.high is not None else abs(value) / 4
    return [(f"+{span:.3g}", _clip(k, value + span)), (f"-{span:.3g}", _clip(k, value - span))]


def priority(k: Knob) -> int:
    """Rates first (where tuned defaults most often still leave something), then the other
    numbers, then shapes and switches (costlier, and more often invalid together)."""
    if _RATE.search(k.constant):
        return 0
    return 1 if k.kind == "float" else 2


def tried_on(ctx: Context, space: list[Knob]) -> set[tuple[str, str]]:
    """(knob, written value) of every one-knob proposal already made on the incumbent."""
    names = {k.name for k in space}
    out = set()
    for e in ctx.history:
        if e.parent_id != ctx.incumbent.id:
            continue
        moved = [n for n in e.params if n in names]
        if len(moved) == 1:
            out.add((moved[0], written(e.params[moved[0]])))
    return out


def moves(ctx: Context, space: list[Knob], pending: set[tuple[int, str, str]] = frozenset()):
    """(knob, value, label) of each untried move around the incumbent, in the order to try them.
    `pending`: (incumbent id, knob, written value) proposed by this process and not journaled yet."""
    now = current_values(ctx.incumbent_files, space)
    tried = tried_on(ctx, space) | {(n, v) for i, n, v in pending if i == ctx.incumbent.id}
    # The move that made this incumbent, if one did: "KNOB label".
    last_knob, _, last_label = ctx.incumbent.params.get(MOVE_KEY, "").partition(" ")
    # Within a priority class the search seed orders the knobs: two seeds, two searches.
    rng = random.Random(f"{ctx.seed}:local")
    draw = {k.name: rng.random() for k in space}
    order = sorted((k for k in space if k.name in now), key=lambda k: (k.name != last_knob, priority(k), draw[k.name]))
    for fine in (False, True):
        for k in order:
            options = steps(k, now[k.name], fine)
            if k.name == last_knob:
                options.sort(key=lambda m: m[0] != last_label)  # the paying direction first
            for label, value in options:
                if written(value) == written(now[k.name]) or (k.name, written(value)) in tried:
                    continue
                yield k.name, value, f"{k.name} {label}"


def seen(ctx: Context, edits: dict[str, str]) -> bool:
    """Whether the incumbent with `edits` holds files the night already measured: the
    incumbent's or the baseline's own, or an experiment's that edited every editable file (a
    step back to where a kept move came from). The journal's duplicate check (night/
    duplicates.py) catches the rest; this only spares the proposal."""
    files = {**ctx.incumbent_files, **edits}
    editable = list(ctx.task.editable)
    if all(ctx.incumbent_files.get(p) == files.get(p) for p in editable):
        return True
    if all(ctx.baseline_files.get(p) == files.get(p) for p in editable):
        return True
    return any(e.edits and all(e.edits.get(p) == files.get(p) for p in editable) for e in ctx.history)
