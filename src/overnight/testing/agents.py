"""Stand-ins for a coding agent (`--proposer agent`): programs that edit the toy's files in
the worktree they are started in, as a real agent CLI would."""

from __future__ import annotations

import sys
from pathlib import Path

from overnight.proposers.options import ProposerOptions

# The scripted agent CLI (run by path, never imported): `fake_agent.py MODE PROMPT DESCRIPTION`.
FAKE_AGENT = Path(__file__).with_name("fake_agent.py")

# The simplest agent: switches the toy's activation to gelu and says so (`--agent-cmd python FILE`).
GELU_AGENT = """\
import os, pathlib
p = pathlib.Path("train.py")
p.write_text(p.read_text().replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"'))
pathlib.Path(os.environ["OVERNIGHT_DESCRIPTION_FILE"]).write_text("gelu instead of relu")
"""


def agent_options(mode: str, **kw) -> ProposerOptions:
    """Options running the fake agent in `mode` (see fake_agent.py's docstring)."""
    cmd = f"{sys.executable} {FAKE_AGENT} {mode} {{prompt_file}} {{description_file}}"
    return ProposerOptions(agent_cmd=cmd, **kw)


# A stand-in per coding-agent CLI by name (agent_standin.py checks the flags of each).
AGENT_STANDIN = Path(__file__).with_name("agent_standin.py")


def agent_standins(bin_dir: Path) -> Path:
    """Executables named claude, codex, aider and gemini in `bin_dir` (put it first on PATH),
    each the stand-in for that CLI."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("claude", "codex", "aider", "gemini"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nexec {sys.executable} {AGENT_STANDIN} {name} "$@"\n')
        exe.chmod(0o755)
    return bin_dir
