"""The one output format of a training run, and the one parser for it.

A run ends by printing a line `---` and then `key: value` lines (autoresearch's format):

    ---
    val_bpb:          0.997900
    training_seconds: 300.1

The parser takes the LAST `---` block of a log, so progress lines printed before it are
ignored, and it never raises: a crashed or cut-off log gives whatever complete lines exist.
These figures are for display; the judged metric comes from the harness-owned result file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(\S.*?)\s*$")


@dataclass
class Summary:
    values: dict = field(default_factory=dict)
    found: bool = False  # a `---` block was present


def _coerce(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_summary(log: str) -> Summary:
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return Summary()
    values = {}
    body = lines[starts[-1] + 1 :]
    if body and not log.endswith("\n"):
        body = body[:-1]  # a line without its newline may be cut off mid-number
    for line in body:
        m = _LINE.match(line.strip())
        if not m:
            break  # the block ends at the first line that is not `key: value` (e.g. a traceback)
        values[m.group(1)] = _coerce(m.group(2))
    return Summary(values, True)


def format_summary(values: dict) -> str:
    """The inverse, for tasks written in Python that want the exact format."""
    width = max((len(k) for k in values), default=0) + 1
    return "---\n" + "".join(f"{k + ':':<{width}} {v}\n" for k, v in values.items())
