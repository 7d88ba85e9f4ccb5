"""`agent`: an external coding-agent command edits a checkout of the current best.

    overnight run --proposer agent --agent claude          (agent_presets.py: claude, codex, aider, gemini)
    overnight run --proposer agent --agent-cmd 'my-agent --prompt {prompt_file}'

For each proposal the harness makes a fresh git worktree of the current best in a temporary
folder (outside the task repository, away from the journal), writes the prompt to a file, and
runs the command there under a wall-clock limit. `{prompt_file}` and `{description_file}` in
the command are replaced by (quoted) paths, `{editable_files}` by the task's editable files, and
the prompt is also on the command's stdin, so `claude -p` or `codex exec -` read it either way.
Afterwards the harness takes the diff of the editable files against the current best and
validates it as the llm proposer does (only
editable files changed, Python compiles, something changed); a rejected change is sent back
once, with the error, in the same worktree.

What this does NOT protect against: the agent is a program you chose and runs as you. It is
told not to run the training and gets no OVERNIGHT_* variables nor the user's credentials (but
those its command names, `$ANTHROPIC_API_KEY`, or `[task] pass_env` lists: credentials.py), and its
worktree is not in the task folder, but nothing stops it from reading or writing other paths on
purpose (a key in ~/.netrc or a login file included).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from overnight import gitops, layout
from overnight.errors import OvernightError
from overnight.proposers import agent_presets, edits, prompt
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.proposers.options import ProposerOptions
from overnight.run import credentials, process
from overnight.task import TaskSpec

KILL_GRACE_SECONDS = 5.0
STOP_POLL_SECONDS = 0.2  # how soon a stopping night ends the agent


class AgentProposer(Proposer):
    name = "agent"

    def __init__(self, opts: ProposerOptions):
        opts.check(self.name)
        self.opts = opts
        self.command = opts.agent_cmd or agent_presets.command(opts.agent)
        # A preset's own keys (agent_presets.py); --agent-cmd names the ones it needs itself.
        self.keys = () if opts.agent_cmd else agent_presets.PRESETS[opts.agent].keys
        flag = "--agent-cmd" if opts.agent_cmd else f"--agent {opts.agent}"
        try:
            program = shlex.split(self.command)[0]
        except (ValueError, IndexError):
            raise OvernightError(f"{flag}: {self.command!r} is not a valid shell command — check its quotes") from None
        if "=" not in program and shutil.which(program) is None:
            raise OvernightError(f"agent command {program!r} not found on PATH ({flag}) — install it or fix {flag}")

    def propose(self, ctx: Context) -> Proposal:
        run_dir = layout.TagPaths(Path(ctx.state_dir), ctx.tag).agent_dir(len(ctx.history) + 1)
        run_dir.mkdir(parents=True, exist_ok=True)
        prompt_file, desc_file, log = run_dir / "prompt.md", run_dir / "description.txt", run_dir / "agent.log"
        desc_file.unlink(missing_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"overnight-agent-{ctx.tag}-"))
        checkout = tmp / "checkout"
        gitops.worktree_add(ctx.task.root, checkout, ctx.incumbent.commit_sha)
        params = {"agent_log": str(log.relative_to(ctx.state_dir))}
        error, description = "", "agent edit"
        try:
            for attempt in range(2):
                _, text = prompt.build(ctx, "agent", description_file=str(desc_file))
                if attempt:
                    text += f"\n# Your previous change was rejected\n\n{error}\nFix it in place.\n"
                prompt_file.write_text(text)
                failure = self._run(checkout, prompt_file, desc_file, log, params, ctx.task, stop=ctx.stop)
                description = self._description(desc_file, log)
                if failure:
                    return Proposal.failed(description, failure, params, proposer=self.name)
                try:
                    new = self._collect(ctx, checkout)
                except edits.EditError as exc:
                    error = str(exc)
                    continue
                return Proposal(description, new, params, proposer=self.name)
            return Proposal.failed(
                description, f"agent change rejected after one retry: {error}", params, proposer=self.name
            )
        finally:
            gitops.worktree_remove(ctx.task.root, checkout)
            shutil.rmtree(tmp, ignore_errors=True)

    def _run(
        self,
        cwd: Path,
        prompt_file: Path,
        desc_file: Path,
        log: Path,
        params: dict,
        task: TaskSpec,
        stop: threading.Event | None = None,
    ) -> str | None:
        """Run the command; None when it exited 0 in time, else why it failed. `stop` (Ctrl-C,
        SIGTERM) ends it at once, as --agent-timeout does."""
        cmd = (
            self.command.replace("{prompt_file}", shlex.quote(str(prompt_file)))
            .replace("{description_file}", shlex.quote(str(desc_file)))
            .replace("{editable_files}", " ".join(shlex.quote(p) for p in task.editable))
        )
        # The agent gets none of the harness's run variables: it is not a training run. Nor the
        # user's credentials, but for those the task's pass_env or the command line itself names
        # (credentials.agent_env: an agent needing its API key is given it explicitly).
        env = {
            k: v
            for k, v in credentials.agent_env(self.command, [*task.pass_env, *self.keys]).items()
            if not k.startswith("OVERNIGHT_")
        }
        env.update(OVERNIGHT_PROMPT_FILE=str(prompt_file), OVERNIGHT_DESCRIPTION_FILE=str(desc_file))
        start = time.monotonic()
        with open(prompt_file, "rb") as stdin, open(log, "ab") as out:
            # Its own process group (process.py), so that the kill below reaches its children.
            proc = process.start_group(
                ["/bin/sh", "-c", cmd], cwd=cwd, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, env=env
            )
            code, stopped = None, False
            try:
                while code is None and time.monotonic() - start < self.opts.agent_timeout:
                    if stop is not None and stop.is_set():
                        stopped = True
                        break
                    try:
                        code = proc.wait(timeout=min(STOP_POLL_SECONDS, self.opts.agent_timeout))
                    except subprocess.TimeoutExpired:
                        pass
            finally:  # also on Ctrl-C: never leave an agent running after the harness
                process.stop_group(proc, KILL_GRACE_SECONDS)
        params["agent_seconds"] = round(params.get("agent_seconds", 0) + time.monotonic() - start, 1)
        if stopped:
            return "agent stopped: the night is stopping (Ctrl-C or SIGTERM)"
        if code is None:
            return f"agent timed out after {self.opts.agent_timeout:g} s (--agent-timeout)"
        if code != 0:
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
            return f"agent command exited {code}: {tail[0][:200] if tail else 'no output'}"
        return None

    def _collect(self, ctx: Context, checkout: Path) -> dict[str, str]:
        """The editable files as the agent left them, validated; other tracked files it changed
        are put back so the retry starts clean. Untracked files it created are ignored."""
        base = ctx.incumbent.commit_sha
        changed = [p for p in gitops.git(checkout, "diff", "--name-only", base).splitlines() if p]
        outside = [p for p in changed if p not in ctx.task.editable]
        if outside:
            gitops.git(checkout, "checkout", base, "--", *outside, check=False)
            raise edits.EditError(
                f"changed {', '.join(outside)}, which may not be edited — change only {', '.join(ctx.task.editable)}"
            )
        new = {}
        for path in ctx.task.editable:
            file = checkout / path
            if not file.is_file():
                gitops.git(checkout, "checkout", base, "--", path, check=False)
                raise edits.EditError(f"{path} was deleted — edit it, do not remove it")
            new[path] = file.read_text(errors="replace")
        return edits.validate(ctx.incumbent_files, new, ctx.task.editable, ctx.task.protected)

    @staticmethod
    def _description(desc_file: Path, log: Path) -> str:
        if desc_file.is_file() and desc_file.read_text(errors="replace").strip():
            return edits.describe(desc_file.read_text(errors="replace"))
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
        return edits.describe(lines[-1]) if lines else "agent edit"
