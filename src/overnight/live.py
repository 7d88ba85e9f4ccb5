"""Terminal views: the live view of `overnight run`, and `status` / `show` renderings (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from overnight.journal import Experiment, ExpStatus, Journal
from overnight.loop import Observer
from overnight.status import status_dict
from overnight.task import Metric
from overnight.usage import usage_line

STATUS_STYLE = {ExpStatus.KEPT: "green", ExpStatus.DISCARDED: "bright_black", ExpStatus.CRASHED: "red",
                ExpStatus.TIMEOUT: "red", ExpStatus.INVALID: "red", ExpStatus.REJECTED: "yellow",
                ExpStatus.RUNNING: "cyan", ExpStatus.PROPOSED: "cyan"}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


class PlainView(Observer):
    """One line per finished experiment; for logs, pipes and --quiet."""

    def __init__(self) -> None:
        self.console = Console(highlight=False)
        self.controller = None

    def attach(self, controller) -> None:
        self.controller = controller
        c = controller
        self.console.print(f"overnight {c.tag}: {c.task.metric.name} ({c.task.metric.goal}), "
                           f"budget {c.task.budget:g} s, proposer {c.cfg.proposer}, judge {c.cfg.judge}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def message(self, text: str) -> None:
        self.console.print(text)

    def experiment_finished(self, exp: Experiment) -> None:
        self.console.print(f"#{exp.id:<4} {exp.status.value:<9} {_fmt(exp.value)}  {exp.description[:90]}")

    def final_summary(self) -> None:
        if self.controller is None:
            return
        c = self.controller
        d = status_dict(c.journal, c.tag, c.task.metric)
        self.console.print(f"{d['experiments']} experiments, {d['kept']} kept, {d['crashed']} failed; "
                           f"baseline {_fmt(d['baseline']['value'])} -> best {_fmt(d['best']['value'])} "
                           f"(#{d['best']['id']}); branch overnight/{c.tag}; "
                           f"results {c.results_path}")


class LiveView(PlainView):
    """A refreshing panel: current experiment with its training progress, best so far, rate, ETA."""

    def __init__(self) -> None:
        super().__init__()
        self.live: Live | None = None
        self.current: Experiment | None = None
        self.elapsed = 0.0
        self.lines: list[str] = []

    def __enter__(self):
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def message(self, text: str) -> None:
        self.lines = (self.lines + [text])[-8:]
        self._update()

    def experiment_started(self, exp: Experiment, run_index: int) -> None:
        self.current, self.elapsed = exp, 0.0
        self._update()

    def progress(self, exp: Experiment, elapsed: float) -> None:
        self.elapsed = elapsed
        self._update()

    def experiment_finished(self, exp: Experiment) -> None:
        style = STATUS_STYLE.get(exp.status, "")
        self.lines = (self.lines + [f"[{style}]#{exp.id:<4} {exp.status.value:<9} {_fmt(exp.value)}[/]  "
                                    f"{exp.description[:80]}"])[-8:]
        self.current = None
        self._update()

    def _render(self):
        parts = []
        c = self.controller
        if c is not None:
            d = status_dict(c.journal, c.tag, c.task.metric)
            head = Text.from_markup(
                f"[bold]overnight {c.tag}[/]  {d['experiments']} experiments, [green]{d['kept']} kept[/], "
                f"[red]{d['crashed']} failed[/], {d['experiments_per_hour']:.1f}/h   best "
                f"[bold green]{_fmt(d['best']['value'])}[/] (baseline {_fmt(d['baseline']['value'])})")
            parts.append(head)
            if c.cfg.experiments and d["experiments_per_hour"] > 0:
                left = max(0, c.cfg.experiments - d["finished"]) / d["experiments_per_hour"] * 60
                parts.append(Text(f"ETA {left:.0f} min for {c.cfg.experiments} experiments"))
            if self.current is not None:
                frac = min(1.0, self.elapsed / c.task.budget)
                parts.append(Text(f"#{self.current.id} {self.current.description[:90]}"))
                parts.append(Group(ProgressBar(total=1.0, completed=frac, width=50),
                                   Text(f"{self.elapsed:.0f}s / {c.task.budget:g}s budget")))
        parts.extend(Text.from_markup(line) for line in self.lines)
        return Group(*parts)


def render_status(d: dict, journal: Journal, tag: str, metric: Metric) -> None:
    console = Console(highlight=False)
    console.print(f"[bold]{tag}[/]: {d['experiments']} experiments ({d['runs']} runs), {d['kept']} kept, "
                  f"{d['crashed']} failed, {d['experiments_per_hour']:.1f} experiments/hour")
    console.print(f"{metric.name} ({metric.goal}): baseline {_fmt(d['baseline']['value'])} -> best "
                  f"[bold green]{_fmt(d['best']['value'])}[/] (#{d['best']['id']}, "
                  f"{(d['best']['commit'] or '')[:7]})")
    if usage_line(d["llm"]):
        console.print(usage_line(d["llm"]))
    if d["noise"]["sd"] is not None:
        per_kept = f", {d['runs_per_kept']:.1f} runs per kept improvement" if d["runs_per_kept"] else ""
        console.print(f"noise: one run's sd {d['noise']['sd']:.6f} ({d['noise']['df']} df){per_kept}")
    for msg in d["drift"][-3:]:
        console.print(f"[yellow]drift:[/] {msg}")
    for msg in d["flagged"][-3:]:
        console.print(f"[yellow]flagged:[/] {msg[:160]}")
    for r in d["running"]:
        since = time.time() - r["since"] if r["since"] else 0
        console.print(f"[cyan]running[/] #{r['id']} for {since:.0f}s: {r['description'][:80]}")
    table = Table("id", "status", metric.name, "description", box=None)
    for e in journal.experiments(tag)[-15:]:
        table.add_row(str(e.id), Text(e.status.value, style=STATUS_STYLE.get(e.status, "")), _fmt(e.value),
                      e.description[:90])
    console.print(table)


def render_experiment(exp: Experiment) -> None:
    # soft_wrap: no hard line breaks inserted, so the printed diff stays a valid patch.
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]#{exp.id}[/] ({exp.tag}) {exp.status.value}: {exp.description}")
    console.print(f"proposer {exp.proposer}, parent #{exp.parent_id}, commit {exp.commit_sha}")
    console.print(f"verdict: {exp.reason or '-'}   value: {_fmt(exp.value)}")
    if exp.params:
        console.print(f"params: {exp.params}")
    for r in exp.runs:
        console.print(f"  run {r.id} seed {r.seed} {r.status}: value {_fmt(r.value)}, wall {r.wall_seconds or 0:.1f}s,"
                      f" training {r.training_seconds or 0:.1f}s, peak {r.peak_memory_mb or 0:.0f} MB, log {r.log_path}")
    if exp.diff:
        console.print(exp.diff, markup=False)
    last = exp.last_run
    if last is not None and last.status != "ok" and last.log_tail:
        console.print("[bold]log tail:[/]")
        console.print(last.log_tail, markup=False)
