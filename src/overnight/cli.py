"""The command group, its error handling, and `init`.

The commands are thin: parse, call the library, print. Errors are one line: `error: ...`.
`run` lives in cli_run.py, the commands that read a night in cli_read.py, the model options,
note and prompt in cli_model.py; all are registered on this group below.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import click

from overnight import gitops
from overnight.cli_model import note, prompt
from overnight.cli_read import ablate, doctor, report, serve, show, status, verify
from overnight.cli_run import run
from overnight.errors import OvernightError
from overnight.tasks import BUILTIN, write_task


class _Group(click.Group):
    """Turns OvernightError into `error: <message>` and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OvernightError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc):
                raise
            # SQLite rolled the failed write back: the journal opens and resumes as it was.
            click.echo(
                f"error: the journal's disk is full ({exc}) — free some space, then run the same "
                "command again to resume",
                err=True,
            )
            sys.exit(2)
        except sqlite3.DatabaseError as exc:  # not an OperationalError: the file itself is bad
            click.echo(
                f"error: the journal (.overnight/journal.db) is damaged ({exc}) — move it aside "
                "and start a new night, or restore it from a backup",
                err=True,
            )
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="overnight")
def main() -> None:
    """overnight: propose, train, measure, keep what is really better — all night."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--task",
    "task_name",
    type=click.Choice(BUILTIN),
    default=None,
    help="write this built-in task into a new folder [default: nanogpt; none for an existing repository]",
)
@click.option("--preset", type=click.Choice(["cpu", "gpu"]), default=None, help="size for this machine (nanogpt)")
@click.option("--data", default=None, help="embedded (default), text:PATH, parquet:DIR or hf:DATASET")
@click.option("--metric", default=None, help="existing repository: the printed metric's name [guessed]")
@click.option("--goal", type=click.Choice(["minimize", "maximize"]), default=None, help="existing repository [guessed]")
@click.option("--command", "command", default=None, help="existing repository: how to run one training [guessed]")
@click.option(
    "--editable", multiple=True, help="existing repository: a file proposers may change (repeat for more) [guessed]"
)
@click.option("--budget", type=float, default=None, help="existing repository: training seconds per run [guessed]")
@click.option("--force", is_flag=True, help="existing repository: replace its overnight.toml")
@click.option(
    "--commit",
    "commit",
    is_flag=True,
    help="existing repository: commit overnight.toml on the current branch (without it: left for you to commit)",
)
def init(
    directory: Path,
    task_name: str | None,
    preset: str | None,
    data: str | None,
    metric: str | None,
    goal: str | None,
    command: str | None,
    editable: tuple[str, ...],
    budget: float | None,
    force: bool,
    commit: bool,
) -> None:
    """Write a built-in task into a new DIRECTORY, or an overnight.toml into an existing git repository."""
    adopting = directory.exists() and any(directory.iterdir()) and task_name is None
    if adopting:
        return _adopt(directory, metric, goal, command, editable, budget, force, commit)
    flags = {"--metric": metric, "--goal": goal, "--command": command, "--budget": budget}
    flags |= {"--editable": editable or None, "--force": force or None, "--commit": commit or None}
    misplaced = [name for name, value in flags.items() if value is not None]
    if misplaced:
        raise OvernightError(
            f"{', '.join(misplaced)}: only for an existing repository (a built-in task is written into a new "
            "folder as it is) — drop them, or give the folder of your repository without --task"
        )
    task_name = task_name or "nanogpt"
    if directory.exists() and any(directory.iterdir()):
        raise OvernightError(
            f"{directory} exists and is not empty — choose a new folder for a built-in task, or drop --task "
            "to write an overnight.toml for the repository there"
        )
    directory.mkdir(parents=True, exist_ok=True)
    try:
        write_task(task_name, directory, preset=preset, data=data)
    except BaseException:
        if not any(directory.iterdir()):
            directory.rmdir()
        raise
    sha = gitops.init_repo(directory, f"overnight init: {task_name} task")
    click.echo(f"wrote the {task_name} task to {directory} (commit {sha[:7]})")
    click.echo(f"next: overnight run {directory}")


def _adopt(directory: Path, metric, goal, command, editable, budget, force: bool, commit: bool) -> None:
    """`overnight init` on an existing repository: adopt.py guesses, adopt_toml.py writes."""
    from overnight.adopt import inspect_repo
    from overnight.adopt_toml import write_spec

    if not gitops.is_repo(directory) or gitops.toplevel(directory).resolve() != directory.resolve():
        raise OvernightError(
            f"{directory} is not the top of a git repository — run `git init` there and commit your code "
            "first, or give a new folder for a built-in task"
        )
    gitops.head(directory)  # a repository with no commit: one line saying to commit first
    found = inspect_repo(directory, metric=metric, goal=goal, command=command, editable=tuple(editable), budget=budget)
    sha = write_spec(directory, found, force=force, commit=commit)
    click.echo(f"{directory}: {found.layout} layout ({found.why['layout']})")
    rows = {
        "command": found.command,
        "editable": ", ".join(found.editable),
        "protected": ", ".join(found.protected) or "none",
        "metric": f"{found.metric}, {found.goal}, read from the output",
        "budget": f"{found.budget:g} s" + (", fixed by the task's code" if found.fixed_budget else ""),
        "knobs": f"{len(found.knobs)} constants for the optuna proposer" if found.knobs else "none",
    }
    for key, value in rows.items():
        why = found.why.get(key)
        click.echo(f"  {key:<10} {value}" + (f"   ({why})" if why else ""))
    for line in found.undecided:
        click.echo(f"  undecided: {line}")
    click.echo("  note: the metric is read from what the run prints; see the comment in overnight.toml")
    if sha:
        click.echo(f"wrote and committed overnight.toml (commit {sha[:7]}); next: overnight run {directory}")
    else:
        click.echo(
            f"wrote {directory / 'overnight.toml'} (not committed): read it, then `git -C {directory} add "
            f"overnight.toml && git -C {directory} commit -m 'overnight.toml'`, then overnight run {directory}"
        )


main.add_command(run)
main.add_command(note)
main.add_command(prompt)
for _command in (status, report, serve, show, verify, ablate, doctor):
    main.add_command(_command)
