"""A stand-in for a coding-agent CLI by name: `agent_standin.py NAME ARGS...`, run in its worktree
through an executable called NAME (claude, codex, aider, gemini: agent_standins() makes them).

It checks the flags it was given as the real CLI would parse them (an unknown flag, a missing
value, or a mode that would stop and ask a human, fails with exit 2 and says which), reads the
prompt where that CLI reads it (stdin, or aider's --message-file), then edits the toy's train.py
as the agent would (ACTIVATION relu -> gelu), prints a last line (the description the harness
falls back to), and appends what it was given (its arguments, the names of the keys in its
environment) to $STANDIN_LOG. Run by path; importing it does
nothing.
"""

import json
import os
import sys
from pathlib import Path

# name -> (flags taking a value, with the values accepted (None: any); flags alone)
SPECS = {
    "claude": (
        {
            "--permission-mode": {"acceptEdits", "bypassPermissions"},
            "--allowedTools": None,
            "--disallowedTools": None,
        },
        {"-p", "--print"},
    ),
    "codex": ({"--sandbox": {"workspace-write"}}, {"--skip-git-repo-check", "--ephemeral"}),
    "aider": (
        {"--message-file": None},
        {
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-git",
            "--no-check-update",
            "--no-analytics",
            "--no-show-model-warnings",
            "--no-pretty",
            "--no-stream",
        },
    ),
    "gemini": ({"--approval-mode": {"auto_edit", "yolo"}, "-p": None}, set()),
}
REQUIRED = {
    "claude": ({"--permission-mode", "--disallowedTools"}, {"-p"}),
    "codex": ({"--sandbox"}, set()),
    "aider": ({"--message-file"}, {"--yes-always", "--no-auto-commits"}),
    "gemini": ({"--approval-mode", "-p"}, set()),
}


def fail(name: str, why: str) -> None:
    print(f"{name}: error: {why}", file=sys.stderr)
    sys.exit(2)


def parse(name: str, args: list[str]) -> tuple[dict, set, list]:
    valued, alone = SPECS[name]
    got, flags, rest = {}, set(), []
    i = 0
    while i < len(args):
        a = args[i]
        if a in valued:
            if i + 1 >= len(args):
                fail(name, f"{a} needs a value")
            allowed = valued[a]
            if allowed is not None and args[i + 1] not in allowed:
                fail(name, f"{a} {args[i + 1]!r}: not one of {sorted(allowed)}")
            got[a] = args[i + 1]
            i += 2
        elif a in alone:
            flags.add(a)
            i += 1
        elif a.startswith("-") and a != "-":
            fail(name, f"unknown option {a}")
        else:
            rest.append(a)
            i += 1
    need_valued, need_flags = REQUIRED[name]
    missing = sorted((need_valued - set(got)) | (need_flags - flags - ({"-p"} if "--print" in flags else set())))
    if missing:
        fail(name, f"would stop and ask, or not run unattended: missing {', '.join(missing)}")
    return got, flags, rest


def main() -> None:
    name, args = sys.argv[1], sys.argv[2:]
    if name == "codex":
        if not args or args[0] != "exec":
            fail(name, "the non-interactive command is `codex exec`")
        args = args[1:]
    got, flags, rest = parse(name, args)
    if name == "claude":
        if "Bash" not in got.get("--disallowedTools", "") or "WebFetch" not in got.get("--disallowedTools", ""):
            fail(name, "the shell and the web are not turned off")
        prompt = sys.stdin.read()
    elif name == "codex":
        if rest != ["-"]:
            fail(name, f"expected `-` (the prompt from stdin), got {rest}")
        prompt = sys.stdin.read()
    elif name == "aider":
        prompt = Path(got["--message-file"]).read_text()
        if "train.py" not in rest:
            fail(name, f"the editable files are not in the chat: {rest}")
    else:
        prompt = sys.stdin.read() + got["-p"]
    if "Make ONE" not in prompt:
        fail(name, "no task in the prompt")
    train = Path("train.py")
    train.write_text(train.read_text().replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"'))
    print(f"{name}: switched the activation to gelu")
    with open(os.environ["STANDIN_LOG"], "a") as log:
        keys = sorted(k for k in os.environ if k.endswith(("_API_KEY", "_TOKEN")))
        log.write(json.dumps({"name": name, "args": sys.argv[2:], "cwd": os.getcwd(), "keys": keys}) + "\n")


if __name__ == "__main__":
    main()
