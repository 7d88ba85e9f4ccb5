"""`python -m overnight.heldout build OUT | score`: the built-in nanogpt task's held-out code.

The entry point named by `[heldout] command` in the nanogpt task's overnight.toml (and in
users' files written from it), kept at this name; the code lives with its task in
`tasks/nanogpt/heldout.py`. Another task brings its own command (docs/task-spec.md).
"""

from __future__ import annotations

import sys

from overnight.tasks.nanogpt.heldout import build, main, score

__all__ = ["build", "main", "score"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
