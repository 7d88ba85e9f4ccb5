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
