"""The CLI for the model-driven proposers: `run`'s model options, `note` and `prompt`.

Kept apart from cli.py so the core commands stay short; cli.py registers these. The options'
defaults live in ProposerOptions only: a flag not given is not passed.
"""

from __future__ import annotations

import functools
import time
from dataclasses import fields
from pathlib import Path

import click

from overnight import gitops
from overnight.errors import OvernightError
from overnight.layout import journal_path, state_dir
from overnight.night.tags import open_journal, resolve_tag
from overnight.proposers.agent_presets import PRESETS
from overnight.proposers.options import PROVIDERS, REPLY_FORMATS, ProposerOptions
from overnight.records import EventKind, Experiment, ExpStatus, incumbent
from overnight.task_load import load_task

# flag -> (ProposerOptions field, click type, help)
MODEL_OPTIONS = {
    "--model": ("model", str, "model name for llm/hybrid (env OVERNIGHT_MODEL)"),
    "--provider": ("provider", click.Choice(PROVIDERS), "protocol [openai; anthropic for claude-* models]"),
    "--base-url": ("base_url", str, "OpenAI-compatible or Anthropic endpoint, e.g. http://127.0.0.1:11434/v1"),
    "--agent": ("agent", click.Choice(tuple(PRESETS)), "agent: a coding agent CLI by name (docs/proposers.md)"),
    "--agent-cmd": ("agent_cmd", str, "agent command; {prompt_file} and {description_file} are filled in"),
    "--agent-timeout": ("agent_timeout", float, "seconds one agent invocation may take"),
    "--hybrid-trials": ("hybrid_trials", int, "hybrid: Optuna trials after each LLM move"),
    "--knob-search": (
        "knob_search",
        click.Choice(("local", "global")),
        "optuna: TPE from the start (global, the default); one constant at a time around the best first (local)",
    ),
    "--price-in": ("price_in", float, "USD per million input tokens, for cost accounting"),
    "--price-out": ("price_out", float, "USD per million output tokens"),
    "--llm-retries": ("retries", int, "tries after the first, per proposal, before the fallback"),
    "--llm-unusable-after": (
        "unusable_after",
        int,
        "model proposals in a row whose edit cannot be used before optuna stands in",
    ),
    "--max-tokens": ("max_tokens", int, "reply token cap (Anthropic)"),
    "--context-tokens": (
        "context_tokens",
        int,
        "the model's context window in tokens: prompts sized to fit [asked of a local server, else 8192]",
    ),
    "--reply-format": (
        "reply_format",
        click.Choice(REPLY_FORMATS),
        "the edit as JSON where the server takes a schema, else text (auto); json; text [auto]",
    ),
}
assert {f for f, _, _ in MODEL_OPTIONS.values()} <= {f.name for f in fields(ProposerOptions)}


def model_options(command):
    """Adds the model flags to a command and hands it one `proposer_options` argument."""

    @functools.wraps(command)
    def wrapper(**kwargs):
        given = {field: kwargs.pop(field) for field, _, _ in MODEL_OPTIONS.values()}
        opts = ProposerOptions(**{k: v for k, v in given.items() if v is not None})
        return command(proposer_options=opts, **kwargs)

    defaults = ProposerOptions()
    for flag, (field, kind, help_text) in reversed(MODEL_OPTIONS.items()):
        default = getattr(defaults, field)
        help_text += f" [{default:g}]" if isinstance(default, (int, float)) else ""
        envvar = "OVERNIGHT_MODEL" if field == "model" else None
        wrapper = click.option(flag, field, type=kind, default=None, envvar=envvar, help=help_text)(wrapper)
    return wrapper


def _root(directory: Path) -> Path:
    return gitops.toplevel(Path(directory).resolve())


@click.command()
@click.argument("text")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None, help="the run it is for (default: the latest)")
def note(text: str, directory: Path, tag: str | None) -> None:
    """Steer the night: TEXT goes into the journal and into the next llm/agent prompts."""
    root = _root(directory)
    load_task(root)  # a note for a folder that is not a task is a mistake
    if not text.strip():
        raise OvernightError('the note is empty — write the guidance, e.g. overnight note "try a longer warmdown"')
    gitops.ignore_locally(root, f"/{state_dir(root).name}/")
    journal = open_journal(root)
    known = journal.tags()
    if tag is not None and tag not in known:
        raise OvernightError(f"no run tagged {tag!r} — known tags: {', '.join(known) or 'none'}")
    target = resolve_tag(journal, tag) if known else None  # None: for the first run to come
    journal.event(target, EventKind.NOTE, text.strip())
    where = f"run {target}" if target else "the next run"
    click.echo(f"noted for {where}: the next llm/agent prompts carry it (see `overnight prompt`)")


def preview_context(root: Path, tag: str | None):
    """The Context the next proposal would get, read-only: from the journal when there is one,
    else a night that has only the baseline (HEAD) and the notes given so far."""
    from overnight.proposers.base import Context

    task = load_task(root)
    head = gitops.head(root)
    history, notes, name = [], [], tag or "preview"
    if journal_path(root).exists():
        journal = open_journal(root)
        if journal.tags() or tag:
            name = resolve_tag(journal, tag)
            history = journal.experiments(name)
        notes = [n["message"] for n in journal.notes(name)]
    base = next((e for e in history if e.parent_id is None), None)
    inc = incumbent(history)
    if inc is None:
        inc = base or Experiment(
            0,
            name,
            None,
            head,
            head,
            {},
            "",
            "baseline",
            "baseline",
            {},
            ExpStatus.KEPT,
            None,
            None,
            time.time(),
            time.time(),
        )
    base_commit = base.commit_sha if base and base.commit_sha else head
    files = gitops.read_files(root, inc.commit_sha, task.editable)
    baseline = gitops.read_files(root, base_commit, task.editable)
    return Context(task, name, state_dir(root), baseline, inc, files, history, notes=notes)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None, help="the run whose history to use (default: the latest)")
@click.option("--proposer", type=click.Choice(["llm", "hybrid", "agent"]), default="llm", show_default=True)
@click.option("--context-tokens", type=int, default=None, help="size it to this context window, as a night would")
@click.option("--reply-format", type=click.Choice(["json", "text"]), default="json", show_default=True)
def prompt(directory: Path, tag: str | None, proposer: str, context_tokens: int | None, reply_format: str) -> None:
    """Print the prompt the model would see next (a dry run: nothing is sent or written)."""
    from overnight.proposers import prompt as promptlib
    from overnight.proposers import window

    opts = ProposerOptions(context_tokens=context_tokens)
    opts.check_numbers()
    ctx = preview_context(_root(directory), tag)
    desc = "<description file>"
    # As a night sizes it (llm.py), given the window: no server asked (nothing is sent).
    win = window.resolve(opts.context_tokens, None, None, opts.max_tokens)
    if win is None or proposer == "agent":
        system, user = promptlib.build(ctx, proposer, desc, reply_format=reply_format)
        shortened = []
    else:
        system, user, shortened = promptlib.fit(ctx, proposer, win.first_prompt_chars, desc, reply_format=reply_format)
    if system:
        click.echo("=== system ===\n" + system + "\n\n=== user ===")
    click.echo(user, nl=False)
    n = promptlib.size(system, user)
    est = f"~{window.tokens(n):,} tokens at {window.CHARS_PER_TOKEN:g} characters a token"
    if win is None:
        cap = f"cap {promptlib.PROMPT_CAP:,}; --context-tokens N sizes it"
        click.echo(f"prompt: {n:,} characters ({est}; {cap})", err=True)
    else:
        cut = f"; shortened: {', '.join(shortened)}" if shortened else "; nothing shortened"
        click.echo(f"prompt: {n:,} characters ({est}) of a {win.describe()}{cut}", err=True)
