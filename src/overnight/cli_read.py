"""The commands that read a night: status, report, serve, show, verify, ablate, and doctor.

Kept apart from cli.py so the core commands (init, run) stay short; cli.py registers these on its
group, as it does cli_model's. Each opens the journal or the task, calls the library, prints.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click

from overnight import gitops
from overnight.cli_model import model_options
from overnight.errors import OvernightError
from overnight.executors import EXECUTORS
from overnight.layout import journal_path, state_dir
from overnight.night.config import RunConfig, check_budget
from overnight.night.tags import open_journal, resolve_tag
from overnight.proposers import ProposerOptions
from overnight.task import CLOCKS
from overnight.task_load import load_task


def _open(directory: Path, tag: str | None):
    root = gitops.toplevel(directory.resolve())
    if not journal_path(root).is_file():
        raise OvernightError(f"no journal in {root} — start one with `overnight run {directory}`")
    journal = open_journal(root)
    tag = resolve_tag(journal, tag)
    if journal.tag_info(tag) is None:
        raise OvernightError(f"no run tagged {tag!r} — known tags: {', '.join(journal.tags()) or 'none'}")
    # The budget the night ran under (`run --budget` overrides overnight.toml's): verify and
    # ablate re-run its commits under it, as the night measured them.
    budget = ((journal.tag_info(tag) or {}).get("config") or {}).get("budget")
    return root, journal, tag, load_task(root).with_budget(budget)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option("--json", "as_json", is_flag=True, help="one JSON object (stable keys)")
@click.option("--follow", is_flag=True, help="refresh every few seconds until Ctrl-C")
def status(directory: Path, tag: str | None, as_json: bool, follow: bool) -> None:
    """Where the night stands: experiments, kept, best so far, experiments per hour."""
    from overnight.report.live import render_status
    from overnight.report.status import status_dict

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


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="folder for report.md, report.html and progress.png (default .overnight/<tag>/)",
)
def report(directory: Path, tag: str | None, out: Path | None) -> None:
    """Write progress.png, report.md and report.html (one self-contained page): the story of the night."""
    from overnight.report.markdown import write_report

    root, journal, tag, task = _open(directory, tag)
    out = out or state_dir(root) / tag
    paths = write_report(journal, tag, task, root, out)
    for p in paths:
        click.echo(f"wrote {p}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None, help="the night to show (default: the latest, followed as new ones start)")
@click.option("--port", type=int, default=8765, show_default=True, help="0 picks a free one")
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to listen on")
def serve(directory: Path, tag: str | None, port: int, host: str) -> None:
    """The report as a live page: read-only, refreshing itself while a night runs."""
    from overnight.report.serve import NightSite, make_server

    root = gitops.toplevel(directory.resolve())
    try:
        _wait_for_night(root, tag, f"overnight run {directory}")
    except KeyboardInterrupt:
        return
    site = NightSite(root, journal_path(root), tag)
    server = make_server(site, host, port)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"serving night {site.tag} at http://{shown}:{bound_port}/ (read-only; Ctrl-C to stop)", nl=True)
    if not server.RequestHandlerClass.loopback:
        click.echo(f"note: {host} is not a loopback address: anyone who reaches it can read every diff and log")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _wait_for_night(root: Path, tag: str | None, start: str) -> None:
    """Return once the journal holds a night (`tag`'s when given): `serve` started before the
    first night waits for it, without creating the journal (serving writes nothing)."""
    import sqlite3

    from overnight.journal import Journal

    said = False
    while True:
        tags = []
        if journal_path(root).is_file():
            try:
                reader = Journal.reader(journal_path(root))
                try:
                    tags = reader.tags()
                finally:
                    reader.close()
            except sqlite3.Error:  # being created by the night's first command
                pass
        if (tag in tags) if tag else tags:
            return
        if not said:
            which = f"night {tag!r}" if tag else "a night"
            known = f" (known tags: {', '.join(tags)})" if tags else ""
            click.echo(f"waiting for {which} in {root}{known}: start it with `{start}` (Ctrl-C to stop)")
            sys.stdout.flush()
            said = True
        time.sleep(0.5)


@click.command()
@click.argument("experiment_id", type=int)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def show(experiment_id: int, directory: Path) -> None:
    """One experiment in full: description, verdict, runs, diff, log tail."""
    from overnight.report.live import render_experiment

    root = gitops.toplevel(directory.resolve())
    if not journal_path(root).is_file():  # reading must not create one
        raise OvernightError(f"no journal in {root} — start one with `overnight run {directory}`")
    journal = open_journal(root)
    exp = journal.experiment(experiment_id)
    if exp is None:
        raise OvernightError(f"no experiment {experiment_id} in {root} — `overnight status` lists them")
    render_experiment(exp)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=RunConfig.executor,
    show_default=True,
    help="ray: also check that Ray imports",
)
@click.option("--ray-address", default=None, help="also check that this Ray cluster answers (auto, host:port)")
@model_options
def doctor(directory: Path, executor: str, ray_address: str | None, proposer_options: ProposerOptions) -> None:
    """Check this machine and the task in DIRECTORY for a night: one line per check; exit 1 when
    the night cannot run. With --base-url, also whether the LLM endpoint answers."""
    from overnight.doctor import checks
    from overnight.doctor_check import Level

    failed = False
    for check in checks(directory, ray=executor == "ray", ray_address=ray_address, llm=proposer_options):
        click.echo(str(check))
        failed = failed or check.level is Level.FAIL
    if failed:
        sys.exit(1)


@contextmanager
def _stopped_by_signals():
    """Ctrl-C and SIGTERM set the yielded event instead of killing Python mid-run: the run in
    progress is killed at once with its process group (runner._run_process), its worktree is
    removed, and the command ends with one line (verify.Remeasure). Later signals change
    nothing: the clean-up they would cut short takes seconds at most."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _check_options(f):
    """--clock and --budget of verify and ablate: the currency the check measures in."""
    f = click.option(
        "--budget",
        type=float,
        default=None,
        help="seconds of training per run (default: the night's); e.g. 4x the night's, to see if a gain holds",
    )(f)
    return click.option(
        "--clock",
        type=click.Choice(CLOCKS),
        default=None,
        help="what counts the budget (default: the night's); wall = the wall time the user spends",
    )(f)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option("--runs", type=int, default=5, show_default=True, help="fresh seeds for each of baseline and best")
@_check_options
def verify(directory: Path, tag: str | None, runs: int, clock: str | None, budget: float | None) -> None:
    """Re-measure the baseline and the best on fresh seeds: the confirmed gain with a 95 % CI."""
    check_budget(budget)
    from overnight.verify import Remeasure, conditions_text, describe, wall_text
    from overnight.verify import verify as do_verify

    root, journal, tag, task = _open(directory, tag)
    with _stopped_by_signals() as stop:
        rm = Remeasure(root, task, journal, tag, runs, stop=stop, clock=clock, budget=budget)
        _, result = do_verify(rm)
    where = f"best {result.label} vs baseline ({conditions_text(rm.conditions())})"
    click.echo(describe(result, task.metric.name).replace(result.label, where, 1))
    walls = wall_text(result, "best", "baseline")
    if walls:
        click.echo(walls)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--tag", default=None)
@click.option("--runs", type=int, default=5, show_default=True, help="fresh seeds for the best and each variant")
@_check_options
def ablate(directory: Path, tag: str | None, runs: int, clock: str | None, budget: float | None) -> None:
    """Take each kept change out of the best in turn and measure what it contributes."""
    check_budget(budget)
    from overnight.verify import Remeasure, describe, wall_text
    from overnight.verify import ablate as do_ablate

    root, journal, tag, task = _open(directory, tag)
    with _stopped_by_signals() as stop:
        rm = Remeasure(root, task, journal, tag, runs, stop=stop, clock=clock, budget=budget)
        _, results = do_ablate(rm)
    for r in results:
        walls = wall_text(r, f"best without {r.label}", "best")
        click.echo(describe(r, task.metric.name) + (f"; {walls}" if walls else ""))
