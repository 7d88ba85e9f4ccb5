"""Knobs: the UPPER_CASE literal constants at module level of an editable file.

A researcher's script already states its hyperparameters as constants under a banner
(`LEARNING_RATE = 3e-4  # peak lr`). We find them by parsing (never by executing the
script), infer a search range around the current value, and rewrite values in place so
comments, spacing and every other line stay byte-identical.

Tuples of numbers (`ADAM_BETAS = (0.8, 0.95)`) become one knob per element, named
`ADAM_BETAS[0]`, `ADAM_BETAS[1]`. Simple constant arithmetic such as `2**19` is understood;
a power of two written as `2**k` is rewritten in the same form.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}
# Names whose values are rates or scales: searched on a log scale.
_LOG_HINT = re.compile(r"(LR|RATE|DECAY|EPS|LAMBDA|SCALE|STD|TEMP)")
# Seeds are not hyperparameters: tuning one only buys noise (autoresearch's "seed 42->137").
DEFAULT_EXCLUDE = re.compile(r"SEED")


@dataclass(frozen=True)
class Constant:
    """One literal constant found in a source file, with where its value sits."""

    name: str
    value: Any
    node: ast.expr  # the value expression; positions are used for rewriting
    text: str  # the value's source text as written


@dataclass(frozen=True)
class Knob:
    """One searchable dimension. `choices` for categoricals, `low/high/log` for numbers."""

    name: str  # "LR" or "ADAM_BETAS[1]"
    file: str
    default: Any
    kind: str  # "int" | "float" | "cat" | "pow2" (an int searched by its exponent)
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = field(default=())

    def sample(self, rng) -> Any:
        """A uniform draw from the space (log-uniform where `log`), for random search."""
        if self.kind == "cat":
            return self.choices[rng.randrange(len(self.choices))]
        if self.kind == "pow2":
            return 2 ** rng.randint(int(self.low), int(self.high))
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return min(int(self.high), max(int(self.low), round(x))) if self.kind == "int" else x

    @property
    def constant(self) -> str:
        return self.name.split("[", 1)[0]

    @property
    def index(self) -> int | None:
        return int(self.name[self.name.index("[") + 1 : -1]) if "[" in self.name else None


def _literal(node: ast.expr) -> Any:
    """literal_eval plus constant arithmetic (2**19, 6 * 64); raises ValueError otherwise."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _literal(node.left), _literal(node.right)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _BINOPS[type(node.op)](left, right)
    raise ValueError("not a literal")


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool))


def find_constants(source: str) -> dict[str, Constant]:
    """All module-level `NAME = literal` assignments (last one wins, as at run time)."""
    tree = ast.parse(source)
    found: dict[str, Constant] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if not (isinstance(target, ast.Name) and _NAME.match(target.id)):
            continue
        try:
            lit = _literal(value)
        except ValueError:
            continue
        if _scalar(lit) or (isinstance(lit, tuple) and lit and all(_scalar(x) for x in lit)):
            text = ast.get_source_segment(source, value) or ""
            found[target.id] = Constant(target.id, lit, value, text)
    return found


def infer_knob(name: str, file: str, value: Any) -> Knob | None:
    """A search range around the current value; None where no range can be guessed (strings)."""
    if isinstance(value, bool):
        return Knob(name, file, value, "cat", choices=(value, not value))
    if isinstance(value, int):
        if value >= 16 and value & (value - 1) == 0:
            # Batch sizes, widths: powers of two stay powers of two (low/high are exponents).
            k = value.bit_length() - 1
            return Knob(name, file, value, "pow2", low=k - 1, high=k + 1)
        if value <= 0:
            return Knob(name, file, value, "int", low=value, high=value + 4)
        # Sizes and counts: halve to double; wide ones on a log scale.
        low, high = max(1, value // 2), value * 2
        return Knob(name, file, value, "int", low=low, high=high, log=value >= 16)
    if isinstance(value, float):
        base = name.split("[", 1)[0]
        if value == 0.0:
            return Knob(name, file, value, "float", low=0.0, high=0.5)
        if 0.0 < value < 1.0 and not _LOG_HINT.search(base):
            # Ratios, fractions, betas: stay inside (0, 1).
            return Knob(name, file, value, "float", low=value / 2, high=value + (1 - value) / 2)
        if value > 0:
            return Knob(name, file, value, "float", low=value / 10, high=value * 10, log=True)
        return Knob(name, file, value, "float", low=value * 2, high=value / 2)
    return None


def _declared_knob(name: str, file: str, value: Any, spec: Any) -> Knob:
    """A `[knobs]` entry of overnight.toml: a list of choices, or {low, high, log}."""
    if isinstance(spec, list):
        return Knob(name, file, value, "cat", choices=tuple(spec))
    kind = "int" if isinstance(value, int) and not isinstance(value, bool) else "float"
    kind = spec.get("type", kind)
    return Knob(name, file, value, kind, low=spec["low"], high=spec["high"], log=bool(spec.get("log", False)))


def discover(
    files: dict[str, str],
    declared: dict[str, Any] | None = None,
    exclude: re.Pattern = DEFAULT_EXCLUDE,
    metric: str = "",
) -> list[Knob]:
    """The knob space of the editable files. `declared` maps a knob name to a range, a list
    of choices, or `false` to leave it alone; declared names override inference. A constant
    whose value only reaches a report (knob_uses.py: printed, logged, MFU) that does not name
    `metric` is no knob unless declared: a trial on it changes nothing."""
    from overnight.knob_uses import report_only

    declared = declared or {}
    idle = report_only(files, metric)
    knobs: list[Knob] = []
    for file, source in sorted(files.items()):
        if not file.endswith(".py"):
            continue
        for const in find_constants(source).values():
            elements = list(enumerate(const.value)) if isinstance(const.value, tuple) else [(None, const.value)]
            for i, value in elements:
                name = const.name if i is None else f"{const.name}[{i}]"
                spec = declared.get(name, declared.get(const.name) if i is None else None)
                if spec is None and declared.get(const.name) is False:
                    spec = False  # `NAME = false` leaves every element of a tuple alone
                if spec is False or (spec is None and (exclude.search(const.name) or (file, const.name) in idle)):
                    continue
                knob = _declared_knob(name, file, value, spec) if spec is not None else infer_knob(name, file, value)
                if knob is not None:
                    knobs.append(knob)
    return knobs


def unknown_declared(files: dict[str, str], declared: dict[str, Any]) -> list[str]:
    """`[knobs]` entries that name no constant of the editable files (a typo would otherwise
    be ignored all night): NAME for a constant, NAME[i] for an element of a tuple constant; a
    range or choice list for a whole tuple is not applied (only `false`), so it is named too."""
    consts: dict[str, Any] = {}
    for file, source in files.items():
        if file.endswith(".py"):
            try:
                consts.update({c.name: c.value for c in find_constants(source).values()})
            except (SyntaxError, ValueError):
                continue  # a file that does not parse declares nothing; its run reports that
    bad = []
    for name, spec in declared.items():
        base, _, rest = name.partition("[")
        value = consts.get(base, _MISSING)
        if value is _MISSING:
            bad.append(name)
        elif rest:  # NAME[i]: an element of a tuple
            index = rest[:-1]
            if not (rest.endswith("]") and index.isdigit() and isinstance(value, tuple) and int(index) < len(value)):
                bad.append(name)
        elif isinstance(value, tuple) and spec is not False:
            bad.append(name)
    return bad


_MISSING = object()


def _format(value: Any, old_text: str) -> str:
    """Source text for a new value, in the style of the old one where it matters."""
    if isinstance(value, str):
        return (
            '"' + repr(value)[1:-1].replace('"', '\\"') + '"'
            if old_text.startswith('"') and "'" not in value
            else repr(value)
        )
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if re.fullmatch(r"\s*2\s*\*\*\s*\d+\s*", old_text) and value > 0 and value & (value - 1) == 0:
            return f"2**{value.bit_length() - 1}"
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write non-finite value {value}")
        short = float(f"{value:.4g}")  # 4 significant digits: readable diffs, no false precision
        text = repr(short)
        if "e" in old_text.lower() and "e" not in text and (abs(short) < 1e-3 or abs(short) >= 1e5):
            mantissa, exp = f"{short:.3e}".split("e")  # keep e-notation: 3e-4, not 0.0003
            text = f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return text
    if isinstance(value, tuple):
        inner = ", ".join(_format(v, "") for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    raise ValueError(f"cannot write a constant of type {type(value).__name__}")


def _same(a: Any, b: Any) -> bool:
    """Equal in value and type (True is not 1, 1 is not 1.0), element-wise for tuples."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def rewrite(source: str, values: dict[str, Any]) -> str:
    """Set constants (`NAME` or `NAME[i]` for tuple elements) in `source`, touching only their
    value text. Unknown names raise KeyError: a proposal for a knob that is gone is a bug."""
    consts = find_constants(source)
    merged: dict[str, Any] = {}
    for key, value in values.items():
        base = key.split("[", 1)[0]
        if base not in consts:
            raise KeyError(f"no constant {base} in source")
        if "[" in key:
            idx = int(key[key.index("[") + 1 : -1])
            current = list(merged.get(base, consts[base].value))
            current[idx] = value
            merged[base] = tuple(current)
        else:
            merged[base] = value
    # bytes.splitlines breaks only at \n, \r\n and \r, like the tokenizer (str.splitlines
    # would also break at form feeds and U+2028 and shift every later line).
    offsets = [0]
    for line in source.encode().splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    data = source.encode()
    # Replace from the end so earlier byte offsets stay valid (ast offsets are in UTF-8 bytes).
    spans = []
    for base, value in merged.items():
        if _same(value, consts[base].value):
            continue  # an unchanged value keeps its text (3e-4 stays 3e-4, 6 * 64 stays)
        node = consts[base].node
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        spans.append((start, end, _format(value, consts[base].text).encode()))
    for start, end, text in sorted(spans, reverse=True):
        data = data[:start] + text + data[end:]
    return data.decode()
