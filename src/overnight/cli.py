"""The command group, its error handling, and the commands that start a night: init and run.

The commands are thin: parse, call the library, print. Errors are one line: `error: ...`. The
commands that read a night live in cli_read.py, the model options, note and prompt in
cli_model.py; both are registered on this group below.
"""

from __future__ import annotations

import math
import signal
import sqlite3
import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from overnight import gitops
from overnight.cli_model import model_options, note, prompt
from overnight.cli_read import ablate, check_budget, doctor, report, serve, show, status, verify
from overnight.doctor import fatal_problems
from overnight.errors import OvernightError
from overnight.executors import EXECUTORS
from overnight.judges import JUDGES
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.screen import ScreenSettings
from overnight.night.tags import check_tag
from overnight.proposers import PROPOSERS, ProposerOptions
from overnight.report.trackers import TRACKERS
from overnight.run import credentials
from overnight.tasks import BUILTIN, write_task

_NS = NoiseSettings()  # the defaults, shown in --help
MAX_SEED = 2**31 - 1  # --seed seeds the search: numpy and Optuna take 32-bit seeds


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


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--proposer", type=click.Choice(PROPOSERS), default="optuna", show_default=True)
@click.option(
    "--judge",
    type=click.Choice(JUDGES),
    default=RunConfig.judge,
    show_default=True,
    help="noise: keep only gains that clear the measured noise; greedy: any lower single run",
)
@click.option(
    "--alpha", type=float, default=None, help=f"noise judge: false-keep rate for a no-op change [{_NS.alpha}]"
)
@click.option(
    "--baseline-seeds", type=int, default=None, help=f"noise judge: seeds for the baseline [{_NS.baseline_runs}]"
)
@click.option("--max-runs", type=int, default=None, help=f"noise judge: most runs per candidate [{_NS.max_runs}]")
@click.option(
    "--line-price", type=float, default=None, help="noise judge: metric gain each net added line must buy [0: off]"
)
@click.option(
    "--no-simplify",
    is_flag=True,
    help="noise judge: do not keep code removals that are shown not worse (within 0.5 sd, one-sided)",
)
@click.option(
    "--no-selection-correction",
    is_flag=True,
    help="noise judge: compare with a kept change's runs as measured (no winner's-curse correction)",
)
@click.option(
    "--remeasure-every",
    type=int,
    default=None,
    help=f"noise judge: re-run the incumbent after this many candidates, to catch drift "
    f"[{_NS.remeasure_every}; 0: never]",
)
@click.option("--budget", type=float, default=None, help="training seconds per run (default: overnight.toml)")
@click.option(
    "--log-to",
    "log_to",
    type=click.Choice(TRACKERS),
    multiple=True,
    help="also send each experiment to this tracker (repeat for both; its own settings: WANDB_*, MLFLOW_*)",
)
@click.option(
    "--screen/--no-screen",
    default=None,
    help="each candidate first trains at a fraction of the budget; only one not clearly worse there "
    "gets full-budget runs (noise judge; turns itself off when short and full runs rank changes "
    "differently)  [default: on with the noise judge]",
)
@click.option(
    "--screen-fraction",
    type=float,
    default=None,
    help=f"--screen: the fraction of the budget a screen run gets [{ScreenSettings.fraction}]",
)
@click.option("--experiments", type=int, default=None, help="stop when the tag has this many experiments")
@click.option("--hours", type=float, default=None, help="stop after this many hours")
@click.option("--tag", default=None, help="name of this run (default: resume the latest, or today's date)")
@click.option("--seed", type=int, default=0, show_default=True, help="search seed")
@click.option("--quiet", is_flag=True, help="no live view, one line per experiment")
@click.option(
    "--slots", type=int, default=None, help="runs at once [one per GPU; 1 on CPU; ray: the cluster's GPUs or CPUs]"
)
@click.option("--gpus", default=None, help="local: pin slots to these GPU ids, e.g. 0,1,3 [detected]")
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=RunConfig.executor,
    show_default=True,
    help="local: this machine; ray: a Ray cluster, each run a Ray task",
)
@click.option("--ray-address", default=None, help="ray: the cluster to join (auto, host:port) [a new local one]")
@model_options
def run(
    directory: Path,
    proposer: str,
    judge: str,
    alpha: float | None,
    baseline_seeds: int | None,
    max_runs: int | None,
    line_price: float | None,
    no_simplify: bool,
    no_selection_correction: bool,
    remeasure_every: int | None,
    budget: float | None,
    screen: bool,
    screen_fraction: float | None,
    experiments: int | None,
    hours: float | None,
    tag: str | None,
    seed: int,
    quiet: bool,
    slots: int | None,
    gpus: str | None,
    executor: str,
    ray_address: str | None,
    proposer_options: ProposerOptions,
    log_to: tuple[str, ...] = (),
) -> None:
    """Run the loop on the task in DIRECTORY until --experiments or --hours (or Ctrl-C)."""
    from overnight.report.live import LiveView, PlainView

    if experiments is not None and experiments < 1:
        raise OvernightError("--experiments must be at least 1 (the baseline counts as one)")
    if hours is not None and not (math.isfinite(hours) and hours > 0):
        raise OvernightError(
            f"--hours must be a positive number, got {hours} — e.g. --hours 8, or leave it "
            "out to run until --experiments or Ctrl-C"
        )
    check_budget(budget)
    if not 0 <= seed <= MAX_SEED:
        raise OvernightError(f"--seed must be from 0 to {MAX_SEED}, got {seed} — pick a smaller seed")
    problems = fatal_problems(directory)  # before anything is written (git, disk, the sandbox)
    if problems:
        raise OvernightError("; ".join(problems) + " (`overnight doctor` checks the rest)")
    if tag is not None:
        check_tag(tag)
    proposer_options.check_numbers()
    noise = noise_settings(
        alpha=alpha,
        baseline_runs=baseline_seeds,
        max_runs=max_runs,
        line_price=line_price,
        remeasure_every=remeasure_every,
        simplify=False if no_simplify else None,
        correct_selection=False if no_selection_correction else None,
    )
    if slots is not None and slots < 1:
        raise OvernightError("--slots must be at least 1")
    gpu_ids = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus is not None else None
    if gpu_ids == () or gpu_ids and not all(g.isdigit() or g.startswith(("GPU-", "MIG-")) for g in gpu_ids):
        raise OvernightError(f"--gpus needs device ids (indices or GPU-/MIG- UUIDs), got {gpus!r} — e.g. --gpus 0,1")
    if ray_address is not None and executor != "ray":
        raise OvernightError("--ray-address needs --executor ray")
    if screen_fraction is not None and not 0 < screen_fraction < 1:
        raise OvernightError(f"--screen-fraction must be between 0 and 1, got {screen_fraction} — e.g. 0.25")
    screening = ScreenSettings() if screen_fraction is None else ScreenSettings(fraction=screen_fraction)
    cfg = RunConfig(
        tag=tag,
        proposer=proposer,
        judge=judge,
        noise=noise,
        experiments=experiments,
        hours=hours,
        budget=budget,
        screen=screen,
        screening=screening,
        seed=seed,
        proposer_options=proposer_options,
        executor=executor,
        slots=slots,
        gpus=gpu_ids,
        ray_address=ray_address,
        log_to=tuple(log_to),
    )
    stop = threading.Event()
    view = PlainView() if quiet or not sys.stdout.isatty() else LiveView()
    credentials.hide_controller_environ()  # a run cannot read the keys in this process's environ

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        stop.set()
        view.message("stopping: recording the running runs as interrupted (Ctrl-C again to force)")

    # Before the controller is built: a Ctrl-C during start-up (a resume killing survivors,
    # sweeping worktrees) stops the night cleanly instead of a KeyboardInterrupt traceback.
    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        controller = Controller(directory, cfg, observer=view, stop=stop)
        view.attach(controller)
        with view:
            controller.run()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    view.final_summary()
    if stop.is_set():
        click.echo(f"stopped. resume with the same command (tag {controller.tag}).")


def noise_settings(**given) -> NoiseSettings:
    """NoiseSettings with the options the user gave; the defaults live in NoiseSettings only."""
    s = replace(NoiseSettings(), **{k: v for k, v in given.items() if v is not None})
    if not (math.isfinite(s.line_price) and s.line_price >= 0):
        raise OvernightError(
            f"--line-price must be 0 or more, got {s.line_price} — it is the metric gain "
            "each added line must buy (0: off)"
        )
    if s.remeasure_every < 0:
        raise OvernightError(f"--remeasure-every must be 0 (never) or more, got {s.remeasure_every}")
    if not 0 < s.alpha < 0.5:
        raise OvernightError(f"--alpha must be between 0 and 0.5, got {s.alpha}")
    if s.baseline_runs < 2 or s.max_runs < 2:
        raise OvernightError("--baseline-seeds and --max-runs must be at least 2 (noise needs replicates)")
    return s


main.add_command(note)
main.add_command(prompt)
for _command in (status, report, serve, show, verify, ablate, doctor):
    main.add_command(_command)
