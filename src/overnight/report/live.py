"""Terminal views: the live view of `overnight run`, and `status` / `show` renderings (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from overnight.journal import Journal
from overnight.night import screen
from overnight.night.config import Observer
from overnight.records import Experiment, ExpStatus, RunStatus
from overnight.report.status import fmt_value, headline, noise_line, status_dict
from overnight.report.usage import usage_line
from overnight.task import Metric
from overnight.textsafe import printable

STATUS_STYLE = {
    ExpStatus.KEPT: "green",
    ExpStatus.DISCARDED: "bright_black",
    ExpStatus.CRASHED: "red",
    ExpStatus.TIMEOUT: "red",
    ExpStatus.INVALID: "red",
    ExpStatus.OOM: "red",
    ExpStatus.REJECTED: "yellow",
    ExpStatus.DUPLICATE: "bright_black",
    ExpStatus.SCREENED: "bright_black",
    ExpStatus.RUNNING: "cyan",
    ExpStatus.PROPOSED: "cyan",
}


class PlainView(Observer):
    """One line per finished experiment; for logs, pipes and --quiet."""

    def __init__(self) -> None:
        # soft_wrap: a log gets whole lines, not breaks at 80 columns; markup off for text that
        # is not ours (descriptions, messages with "[task]" in them).
        self.console = Console(highlight=False, soft_wrap=True)
        self.controller = None

    def attach(self, controller) -> None:
        self.controller = controller
        c = controller
        self.console.print(
            f"overnight {c.tag}: {c.task.metric.name} ({c.task.metric.goal}), "
            f"budget {c.task.budget:g} s, proposer {c.cfg.proposer}, judge {c.cfg.judge}"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def message(self, text: str) -> None:
        self.console.print(text, markup=False)

    def experiment_finished(self, exp: Experiment) -> None:
        self.console.print(
            f"#{exp.id:<4} {exp.status.value:<9} {fmt_value(exp.value)}  {printable(exp.description, True)[:90]}",
            markup=False,
        )

    def final_summary(self) -> None:
        if self.controller is None:
            return
        c = self.controller
        d = status_dict(c.journal, c.tag, c.task.metric)
        base, best = headline(d)
        self.console.print(
            f"{d['experiments']} experiments, {d['kept']} kept, {d['crashed']} failed; "
            f"baseline {base} -> best {best}; branch overnight/{c.tag}; results {c.results_path}",
            markup=False,
        )


class LiveView(PlainView):
    """A refreshing panel: current experiment with its training progress, best so far, rate, ETA."""

    def __init__(self) -> None:
        super().__init__()
        self.live: Live | None = None
        self.slot_rows: list[dict] = []  # from the controller, every VIEW_SECONDS
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
        self.lines = (self.lines + [escape(text)])[-8:]
        self._update()

    def slots(self, rows: list[dict]) -> None:
        self.slot_rows = rows
        self._update()

    def experiment_finished(self, exp: Experiment) -> None:
        style = STATUS_STYLE.get(exp.status, "")
        desc = escape(printable(exp.description, True)[:80])
        line = f"[{style}]#{exp.id:<4} {exp.status.value:<9} {fmt_value(exp.value)}[/]  {desc}"
        self.lines = (self.lines + [line])[-8:]
        self._update()

    def _render(self):
        parts = []
        c = self.controller
        if c is not None:
            d = status_dict(c.journal, c.tag, c.task.metric)
            head = Text.from_markup(
                f"[bold]overnight {c.tag}[/]  {d['experiments']} experiments, [green]{d['kept']} kept[/], "
                f"[red]{d['crashed']} failed[/], {d['experiments_per_hour']:.1f}/h   best "
                f"[bold green]{headline(d)[1]}[/] (baseline {headline(d)[0]})"
            )
            parts.append(head)
            if c.cfg.experiments and d["experiments_per_hour"] > 0:
                left = max(0, c.cfg.experiments - d["finished"]) / d["experiments_per_hour"] * 60
                parts.append(Text(f"ETA {left:.0f} min for {c.cfg.experiments} experiments"))
            if d["duty_cycle"] is not None and len(self.slot_rows) > 1:
                parts.append(Text(f"{len(self.slot_rows)} slots, duty cycle {100 * d['duty_cycle']:.0f} %"))
            for row in self.slot_rows:
                parts.append(_slot_line(row, c.task.budget))
        parts.extend(Text.from_markup(line) for line in self.lines)
        return Group(*parts)


def _where(row: dict) -> str:
    gpu = f" gpu {row['gpu']}" if row.get("gpu") is not None else ""
    threads = f" {row['threads']} thr" if row.get("threads") else ""
    return f"slot {row['slot']} ({row['node']}{gpu}{threads})"


def _slot_line(row: dict, budget: float, suffix: str = ""):
    """One slot: where it is, and what it trains with a progress bar, or idle."""
    if row.get("experiment") is None:
        return Text(f"{_where(row)}: idle{suffix}", style="bright_black")
    elapsed = row.get("elapsed") or 0.0
    bar = ProgressBar(total=1.0, completed=min(1.0, elapsed / budget), width=30)
    table = Table.grid(padding=(0, 1))
    table.add_row(
        Text(_where(row)),
        bar,
        Text(f"{elapsed:.0f}s/{budget:g}s #{row['experiment']} {(row.get('description') or '')[:60]}{suffix}"),
    )
    return table


def render_status(d: dict, journal: Journal, tag: str, metric: Metric) -> None:
    console = Console(highlight=False)
    console.print(
        f"[bold]{tag}[/]: {d['experiments']} experiments ({d['runs']} runs), {d['kept']} kept, "
        f"{d['crashed']} failed, {d['experiments_per_hour']:.1f} experiments/hour"
    )
    base, best = headline(d)
    console.print(f"{metric.name} ({metric.goal}): baseline {base} -> best [bold green]{best}[/]")
    if usage_line(d["llm"]):
        console.print(usage_line(d["llm"]))
    if noise_line(d):
        per_kept = f", {d['runs_per_kept']:.1f} runs per kept improvement" if d["runs_per_kept"] else ""
        console.print(noise_line(d) + per_kept)
    if screen.summary_line(d["screen"]):
        console.print(screen.summary_line(d["screen"]))
    for msg in d["drift"][-3:]:
        console.print(f"[yellow]drift:[/] {msg}")
    for msg in d.get("tracker", [])[-3:]:
        console.print(f"[yellow]tracker:[/] {msg[:160]}")
    for msg in d["flagged"][-3:]:
        console.print(f"[yellow]flagged:[/] {msg[:160]}")
    if d["slots"]:
        duty = f", duty cycle {100 * d['duty_cycle']:.0f} %" if d["duty_cycle"] is not None else ""
        console.print(f"{len(d['slots'])} slot(s) ({d['slots'][0].get('executor') or 'local'}){duty}")
        budget = (d["config"] or {}).get("budget") or 1.0
        for row in d["slots"]:
            duty = f"  (duty {100 * row['duty_cycle']:.0f} %)" if row["duty_cycle"] is not None else ""
            console.print(_slot_line(row, budget, duty))
    else:
        for r in d["running"]:
            since = time.time() - r["since"] if r["since"] else 0
            console.print(f"[cyan]running[/] #{r['id']} for {since:.0f}s: {r['description'][:80]}")
    table = Table("id", "status", metric.name, "description", box=None)
    for e in journal.experiments(tag)[-15:]:
        table.add_row(
            str(e.id),
            Text(e.status.value, style=STATUS_STYLE.get(e.status, "")),
            fmt_value(e.value),
            printable(e.description, True)[:90],
        )
    console.print(table)


def render_experiment(exp: Experiment) -> None:
    # soft_wrap: no hard line breaks inserted, so the printed diff stays a valid patch.
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]#{exp.id}[/] ({exp.tag}) {exp.status.value}: {escape(printable(exp.description))}")
    console.print(f"proposer {exp.proposer}, parent #{exp.parent_id}, commit {exp.commit_sha}")
    console.print(f"verdict: {exp.reason or '-'}   value: {fmt_value(exp.value)}")
    if exp.params:
        console.print(f"params: {exp.params}")
    if exp.cost is not None:  # the steps clock: what each run of it was charged per token
        ref = f" (its parent's: {1e6 * exp.cost_ref:.2f})" if exp.cost_ref else ""
        console.print(f"cost: {1e6 * exp.cost:.2f} us per token{ref}")
    for r in exp.runs:
        cpu = r.summary.get("cpu_seconds")
        console.print(
            f"  run {r.id} seed {r.seed} {r.status.value}: value {fmt_value(r.value)}, wall {r.wall_seconds or 0:.1f}s"
            + (f", cpu {cpu:.1f}s" if cpu is not None else "")
            + f", training {r.training_seconds or 0:.1f}s, peak {r.peak_memory_mb or 0:.0f} MB, log {r.log_path}"
        )
    if exp.diff:
        console.print(exp.diff, markup=False)
    last = exp.last_run
    if last is not None and last.status != RunStatus.OK and last.log_tail:
        console.print("[bold]log tail:[/]")
        console.print(last.log_tail, markup=False)
