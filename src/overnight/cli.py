"""The commands, thin: parse, call the library, print. Errors are one line: `error: ...`."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import click

from overnight import gitops
from overnight.errors import OvernightError
from overnight.judges import JUDGES
from overnight.loop import Controller, RunConfig, open_journal, resolve_tag, state_dir
from overnight.proposers import PROPOSERS, ProposerOptions
from overnight.cli_model import model_options, note, prompt
from overnight.task import load_task
from overnight.tasks import BUILTIN, write_task


class _Group(click.Group):
    """Turns OvernightError into `error: <message>` and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OvernightError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="overnight")
def main() -> None:
    """overnight: propose, train, measure, keep what is really better — all night."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", "task_name", type=click.Choice(BUILTIN), default="nanogpt", show_default=True)
@click.option("--preset", type=click.Choice(["cpu", "gpu"]), default=None, help="size for this machine (nanogpt)")
@click.option("--data", default=None, help="embedded (default), text:PATH, parquet:DIR or hf:DATASET")
def init(directory: Path, task_name: str, preset: str | None, data: str | None) -> None:
    """Write a built-in task into DIRECTORY as a new git repository."""
    if directory.exists() and any(directory.iterdir()):
        raise OvernightError(f"{directory} exists and is not empty — choose a new folder")
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


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--proposer", type=click.Choice(PROPOSERS), default="optuna", show_default=True)
@click.option("--judge", type=click.Choice(JUDGES), default="greedy", show_default=True)
@click.option("--budget", type=float, default=None, help="training seconds per run (default: overnight.toml)")
@click.option("--experiments", type=int, default=None, help="stop when the tag has this many experiments")
@click.option("--hours", type=float, default=None, help="stop after this many hours")
@click.option("--tag", default=None, help="name of this run (default: resume the latest, or today's date)")
@click.option("--seed", type=int, default=0, show_default=True, help="search seed")
@click.option("--quiet", is_flag=True, help="no live view, one line per experiment")
@model_options
def run(directory: Path, proposer: str, judge: str, budget: float | None, experiments: int | None,
        hours: float | None, tag: str | None, seed: int, quiet: bool,
        proposer_options: ProposerOptions) -> None:
    """Run the loop on the task in DIRECTORY until --experiments or --hours (or Ctrl-C)."""
    from overnight.live import LiveView, PlainView

    if experiments is not None and experiments < 1:
        raise OvernightError("--experiments must be at least 1 (the baseline counts as one)")
    cfg = RunConfig(tag=tag, proposer=proposer, judge=judge, experiments=experiments, hours=hours,
                    budget=budget, seed=seed, proposer_options=proposer_options)
    stop = threading.Event()
    view = PlainView() if quiet or not sys.stdout.isatty() else LiveView()
    controller = Controller(directory, cfg, observer=view, stop=stop)
    view.attach(controller)

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        stop.set()
        view.message("stopping: recording the running experiment as interrupted (Ctrl-C again to force)")

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        with view:
            controller.run()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    view.final_summary()
    if stop.is_set():
        click.echo(f"stopped. resume with the same command (tag {controller.tag}).")


def _open(directory: Path, tag: str | None):
    root = gitops.toplevel(directory.resolve())
    if not (state_dir(root) / "journal.db").exists():
        raise OvernightError(f"no journal in {root} — start one with `overnight run {directory}`")
    journal = open_journal(root)
    tag = resolve_tag(journal, tag)
    if journal.tag_info(tag) is None:
        raise OvernightError(f"no run tagged {tag!r} — known tags: {', '.join(journal.tags()) or 'none'}")
    return root, journal, tag, load_task(root)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option("--json", "as_json", is_flag=True, help="one JSON object (stable keys)")
@click.option("--follow", is_flag=True, help="refresh every few seconds until Ctrl-C")
def status(directory: Path, tag: str | None, as_json: bool, follow: bool) -> None:
    """Where the night stands: experiments, kept, best so far, experiments per hour."""
    from overnight.live import render_status
    from overnight.status import status_dict

    root, journal, tag, task = _open(directory, tag)
    while True:
        data = status_dict(journal, tag, task.metric)
        if as_json:
            click.echo(json.dumps(data, default=str))
        else:
            render_status(data, journal, tag, task.metric)
        if not follow:
            return
        try:
            time.sleep(3)
        except KeyboardInterrupt:
            return


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for report.md and progress.png (default .overnight/<tag>/)")
def report(directory: Path, tag: str | None, out: Path | None) -> None:
    """Write progress.png and report.md: the story of the night."""
    from overnight.report import write_report

    root, journal, tag, task = _open(directory, tag)
    out = out or state_dir(root) / tag
    paths = write_report(journal, tag, task, root, out)
    for p in paths:
        click.echo(f"wrote {p}")


@main.command()
@click.argument("experiment_id", type=int)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def show(experiment_id: int, directory: Path) -> None:
    """One experiment in full: description, verdict, runs, diff, log tail."""
    from overnight.live import render_experiment

    root = gitops.toplevel(directory.resolve())
    journal = open_journal(root)
    exp = journal.experiment(experiment_id)
    if exp is None:
        raise OvernightError(f"no experiment {experiment_id} in {root} — `overnight status` lists them")
    render_experiment(exp)


main.add_command(note)
main.add_command(prompt)
