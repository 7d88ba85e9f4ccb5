"""A stand-in coding agent: `fake_agent.py MODE PROMPT_FILE DESCRIPTION_FILE`, run in its worktree.

MODE: gelu (switch the toy's activation), protected-then-gelu (first edit a protected file;
when the prompt says the change was rejected, do it right), syntax (break train.py), sleep,
fail (exit 3), nothing. Run by path (agents.FAKE_AGENT); importing it does nothing.
"""

import os
import sys
import time
from pathlib import Path


def gelu(train: Path, description_file: str) -> None:
    train.write_text(train.read_text().replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"'))
    Path(description_file).write_text("Use gelu instead of relu\nbecause it is smoother.\n")


def main() -> None:
    mode, prompt_file, description_file = sys.argv[1:4]
    prompt = Path(prompt_file).read_text()
    assert sys.stdin.read() == prompt, "the prompt is also on stdin"
    leaked = sorted(
        k
        for k in os.environ
        if k.startswith("OVERNIGHT_") and k not in ("OVERNIGHT_PROMPT_FILE", "OVERNIGHT_DESCRIPTION_FILE")
    )
    print(f"cwd={os.getcwd()} leaked={leaked}")
    train = Path("train.py")
    retry = "previous change was rejected" in prompt
    if mode == "gelu":
        gelu(train, description_file)
    elif mode == "protected-then-gelu":
        if retry:
            assert "import json" in Path("evaluate.py").read_text(), "evaluate.py was restored"
            gelu(train, description_file)
        else:
            Path("evaluate.py").write_text("# hacked\n")
            train.write_text(train.read_text().replace("WIDTH = 64", "WIDTH = 96"))
    elif mode == "syntax":
        train.write_text(train.read_text() + "\ndef broken(:\n")
    elif mode == "sleep":
        time.sleep(30)
    elif mode == "fail":
        print("something went wrong")
        sys.exit(3)
    print("done")


if __name__ == "__main__":
    main()
