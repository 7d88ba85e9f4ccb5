"""The coding agents users run, by name: `--agent claude|codex|aider|gemini` (a fixed contract).

Each expands to the command line its CLI needs to edit files unattended in the worktree the
agent proposer makes (agent.py): its non-interactive mode, its permission to edit files without
asking, the prompt from stdin or a file, and no shell or web tools where the CLI can turn them
off. Written for the versions named; a CLI that renamed a flag since says so in its own error,
which the night journals as the proposal's failure. `--agent-cmd` stays for anything else and
wins over `--agent`. In a command, {prompt_file}, {description_file} and {editable_files} are
filled in (quoted); the prompt is also on the command's stdin. Choosing an agent by name passes
it the API keys that CLI reads, when they are set (`Preset.keys`; the agent only, never the
runs), as naming them in `--agent-cmd` would; one that logs in with a file needs none.
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
    keys: tuple[str, ...] = ()  # the API keys that CLI reads: passed to it (not to the runs) when set


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
            ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        ),
        Preset(
            "codex",
            "Codex CLI 0.5 (codex exec)",
            "codex exec --sandbox workspace-write --skip-git-repo-check --ephemeral -",
            "exec is non-interactive and asks for no approval; `-` reads the prompt from stdin; the "
            "workspace-write sandbox lets it edit the worktree and has no network",
            ("OPENAI_API_KEY", "CODEX_API_KEY"),
        ),
        Preset(
            "aider",
            "aider 0.86",
            "aider --message-file {prompt_file} --yes-always --no-auto-commits --no-dirty-commits --no-git "
            "--no-check-update --no-analytics --no-show-model-warnings --no-pretty --no-stream {editable_files}",
            "one message from the prompt file, then exit; the editable files in its chat; it answers yes "
            "to its own questions and commits nothing",
            ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
        ),
        Preset(
            "gemini",
            "Gemini CLI 0.9",
            'gemini --approval-mode auto_edit -p "Follow the instructions above."',
            "headless (-p, appended to the prompt on stdin); file edits approved, shell commands not",
            ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        ),
    )
}


def command(name: str) -> str:
    """The command line of agent `name`; one line naming the known ones for another."""
    if name not in PRESETS:
        raise OvernightError(f"unknown agent {name!r} — use one of {', '.join(PRESETS)}, or --agent-cmd for another")
    return PRESETS[name].command
