"""The coding agents users run, by name: `--agent claude|codex|aider|gemini` (a fixed contract).

Each expands to the command line its CLI needs to edit files unattended in the worktree the
agent proposer makes (agent.py): its non-interactive mode, its permission to edit files without
asking, the prompt from stdin or a file, and no shell or web tools where the CLI can turn them
off. Written for the versions named; a CLI that renamed a flag since says so in its own error,
which the night journals as the proposal's failure. `--agent-cmd` stays for anything else and
wins over `--agent`. In a command, {prompt_file}, {description_file} and {editable_files} are
filled in (quoted); the prompt is also on the command's stdin.
"""

from __future__ import annotations

from dataclasses import dataclass

from overnight.errors import OvernightError


@dataclass(frozen=True)
class Preset:
    name: str
    version: str  # the CLI version the command line was written for
    command: str
    why: str  # what its flags do, for docs/proposers.md


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "claude",
            "Claude Code 2.1",
            "claude -p --permission-mode acceptEdits --allowedTools Read,Edit,Write,Glob,Grep "
            "--disallowedTools Bash,WebFetch,WebSearch",
            "print mode (-p) takes the prompt on stdin and exits; file edits accepted without asking; "
            "no shell, no web tools",
        ),
        Preset(
            "codex",
            "Codex CLI 0.5 (codex exec)",
            "codex exec --sandbox workspace-write --skip-git-repo-check --ephemeral -",
            "exec is non-interactive and asks for no approval; `-` reads the prompt from stdin; the "
            "workspace-write sandbox lets it edit the worktree and has no network",
        ),
        Preset(
            "aider",
            "aider 0.86",
            "aider --message-file {prompt_file} --yes-always --no-auto-commits --no-dirty-commits --no-git "
            "--no-check-update --no-analytics --no-show-model-warnings --no-pretty --no-stream {editable_files}",
            "one message from the prompt file, then exit; the editable files in its chat; it answers yes "
            "to its own questions and commits nothing",
        ),
        Preset(
            "gemini",
            "Gemini CLI 0.9",
            'gemini --approval-mode auto_edit -p "Follow the instructions above."',
            "headless (-p, appended to the prompt on stdin); file edits approved, shell commands not",
        ),
    )
}


def command(name: str) -> str:
    """The command line of agent `name`; one line naming the known ones for another."""
    if name not in PRESETS:
        raise OvernightError(f"unknown agent {name!r} — use one of {', '.join(PRESETS)}, or --agent-cmd for another")
    return PRESETS[name].command
