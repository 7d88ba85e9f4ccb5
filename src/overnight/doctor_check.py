"""A check of `overnight doctor`: its level, name, what it found and what to do, as one line.
Its own module so the checks of doctor.py and the probes of doctor_probes.py share it without
importing each other."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from enum import Enum


class Level(Enum):
    OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"


OK, INFO, WARN, FAIL = Level.OK, Level.INFO, Level.WARN, Level.FAIL


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    detail: str
    fix: str = ""  # what to do; empty when there is nothing to do (or `detail` already says it)

    @property
    def text(self) -> str:
        text = f"{self.name}: {self.detail}" + (f" — {self.fix}" if self.fix else "")
        return " ".join(text.splitlines())  # one line, whatever a tool's message held

    def __str__(self) -> str:
        return f"{self.level.value:<5} {self.text}"


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.strip().splitlines() or [""])[0]
