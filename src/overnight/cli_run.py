"""`overnight run`: its options parsed into a RunConfig (night/config.py checks them), then
the night run in this process (`run_night`)."""

from __future__ import annotations

import math
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from overnight.cli_model import model_options
from overnight.doctor import fatal_problems
from overnight.errors import OvernightError
from overnight.executors import EXECUTORS
from overnight.judges import JUDGES
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.screen import ScreenSettings
from overnight.proposers import PROPOSERS, ProposerOptions
from overnight.report.trackers import TRACKERS
from overnight.run import credentials

_NS = NoiseSettings()  # the defaults, shown in --help


@click.command()
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
    noise = noise_settings(
        alpha=alpha,
        baseline_runs=baseline_seeds,
        max_runs=max_runs,
        line_price=line_price,
        remeasure_every=remeasure_every,
        simplify=False if no_simplify else None,
        correct_selection=False if no_selection_correction else None,
    )
    gpu_ids = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus is not None else None
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
    problems = fatal_problems(directory)  # before anything is written (git, disk, the sandbox)
    if problems:
        raise OvernightError("; ".join(problems) + " (`overnight doctor` checks the rest)")
    run_night(directory, cfg, quiet)


def run_night(directory: Path, cfg: RunConfig, quiet: bool) -> None:
    """The night in this process: the live view (or one line per experiment), Ctrl-C and
    SIGTERM stopping it cleanly, and the line that says how to resume."""
    from overnight.report.live import LiveView, PlainView

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
