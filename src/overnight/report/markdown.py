"""The morning report: progress.png (autoresearch's picture) and report.md (report.html: html.py).

progress.png: every finished experiment as a dot in order (discarded in grey, kept in green
with its description), the running best as a step line, failures as red crosses at the top.
report.md: baseline, best, total gain, each kept change with its diff, the crashes, and
Optuna's parameter importances when there are enough trials.
"""

from __future__ import annotations

import json
from pathlib import Path

from overnight import layout
from overnight.journal import Journal
from overnight.night import screen
from overnight.records import EventKind, Experiment, ExpStatus
from overnight.report.html import write_html
from overnight.report.page_data import importances
from overnight.report.status import fmt_value, headline, noise_line, running_best, status_dict
from overnight.report.usage import usage_markdown
from overnight.task import TaskSpec


def plot_progress(history: list[Experiment], task: TaskSpec, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display at night
    import matplotlib.pyplot as plt

    done = [e for e in history if e.status.final]
    fig, ax = plt.subplots(figsize=(12, 6))
    xs = {e.id: i for i, e in enumerate(done)}
    disc = [(xs[e.id], e.value) for e in done if e.status == ExpStatus.DISCARDED and e.value is not None]
    kept = [(xs[e.id], e.value, e) for e in done if e.status == ExpStatus.KEPT and e.value is not None]
    values = [v for _, v in disc] + [v for _, v, _ in kept]
    if disc:
        ax.scatter(*zip(*disc), c="#bbbbbb", s=18, label="discarded", zorder=2)
    if kept:
        kx, ky, _ = zip(*kept)
        ax.scatter(kx, ky, c="#2ca02c", s=40, label="kept", zorder=3)
        steps = sorted(((xs[i], v) for i, v in running_best(done, task.metric)), key=lambda t: t[0])
        sx = [x for x, _ in steps] + [len(done) - 1]
        sy = [y for _, y in steps] + [steps[-1][1]]
        ax.step(sx, sy, where="post", c="#2ca02c", lw=1.5, zorder=1, label="best so far")
        for x, y, e in kept:
            ax.annotate(
                e.description[:40],
                (x, y),
                fontsize=7,
                rotation=25,
                xytext=(4, 4),
                textcoords="offset points",
                color="#1a6e1a",
            )
    failed = [xs[e.id] for e in done if e.status.failed]
    if failed and values:
        top = max(values) if task.metric.goal == "minimize" else min(values)
        ax.scatter(failed, [top] * len(failed), marker="x", c="#d62728", s=25, label="failed", zorder=2)
    ax.set_xlabel("experiment")
    ax.set_ylabel(f"{task.metric.name} ({'lower' if task.metric.goal == 'minimize' else 'higher'} is better)")
    ax.set_title(f"overnight: {len(done)} experiments, {len(kept) - 1 if kept else 0} kept improvements")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing decided yet: no legend (matplotlib warns on an empty one)
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_markdown(journal: Journal, tag: str, task: TaskSpec, state_dir: Path) -> str:
    d = status_dict(journal, tag, task.metric)
    history = journal.experiments(tag)
    m = task.metric
    out = [
        f"# overnight report: {tag}",
        "",
        f"- metric: `{m.name}` ({m.goal}), budget {task.budget:g} s per run",
        f"- experiments: {d['experiments']} ({d['runs']} runs), kept {d['kept']}, "
        f"discarded {d['discarded']}, failed {d['crashed']}; {d['experiments_per_hour']:.1f} experiments/hour",
        f"- baseline: {headline(d)[0]}",
        f"- best: {headline(d)[1]}",
    ]
    if d["gain"] is not None:
        base = d["baseline"]["value"]
        rel = f" ({100 * d['gain'] / abs(base):.2f} %)" if base else ""
        out.append(f"- total gain: {d['gain']:.6f}{rel}")
    if noise_line(d):
        out.append(f"- {noise_line(d)} (pooled over replicate runs)")
    if screen.summary_line(d["screen"]):
        out.append(f"- {screen.summary_line(d['screen'])}")
    if d["runs_per_kept"]:
        out.append(f"- cost: {d['runs_per_kept']:.1f} training runs per kept improvement")
    out += ["", "![progress](progress.png)", "", "## Kept changes", ""]
    by_id = {e.id: e for e in history}
    for e in sorted(
        (e for e in history if e.status == ExpStatus.KEPT and e.parent_id is not None),
        key=lambda e: (e.decided or 0, e.id),
    ):
        parent = by_id.get(e.parent_id)
        delta = (
            m.improvement(e.value, parent.value)
            if parent and parent.value is not None and e.value is not None
            else None
        )
        out += [
            f"### #{e.id}: {e.description}",
            "",
            f"{fmt_value(e.value)} over {len(e.ok_values)} run(s) (gain {fmt_value(delta)} over #{e.parent_id}); "
            f"{e.reason or ''}",
            "",
            "```diff",
            (e.diff or "").rstrip(),
            "```",
            "",
        ]
    if len(out) and out[-1] == "" and out[-2] == "## Kept changes":
        out += ["No change beat the baseline.", ""]
    out += _second_opinion(journal, tag, m.name)
    for title, key in (("Drift", "drift"), ("Candidates that ignore the seed", "flagged")):
        if d[key]:
            out += [f"## {title}", ""] + [f"- {msg}" for msg in d[key]] + [""]
    failed = [e for e in history if e.status.failed]
    if failed:
        out += ["## Failures", "", "| id | status | description | reason |", "|---|---|---|---|"]
        for e in failed:
            reason = (e.reason or "").splitlines()[0][:100] if e.reason else ""
            out.append(f"| {e.id} | {e.status.value} | {e.description[:60]} | {reason} |")
        out.append("")
    out += usage_markdown(d["llm"])
    imp = importances(state_dir, tag)
    if imp:
        out += ["## Parameter importances (Optuna, fANOVA)", "", "| knob | importance |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in imp.items()]
        out.append("")
    out += ["## All experiments", "", f"| id | status | {m.name} | description |", "|---|---|---|---|"]
    out += [f"| {e.id} | {e.status.value} | {fmt_value(e.value)} | {e.description[:80]} |" for e in history]
    return "\n".join(out) + "\n"


def _second_opinion(journal: Journal, tag: str, metric_name: str) -> list[str]:
    """Every `overnight verify` (with the clock and budget it ran under) and the latest
    `overnight ablate`, if any were run."""
    from overnight.verify import Comparison, conditions_text, describe, latest, wall_text

    out = []
    checks = [json.loads(e["message"]) for e in journal.events(tag, EventKind.VERIFY)]
    if checks:
        out += ["## Verified on fresh seeds", ""]
    for v in checks:
        c = Comparison(**{k: v[k] for k in ("label", "values", "gain", "low", "high", "note")})
        c.wall, c.ref_wall = v.get("wall"), v.get("ref_wall")
        walls = wall_text(c, "best", "baseline")
        out += [
            f"- {conditions_text(v)}: best {describe(c, metric_name)} (vs the baseline)"
            + (f"; {walls}" if walls else "")
        ]
    out += [""] if checks else []
    a = latest(journal, tag, "ablate")
    if a:
        out += [f"## Ablation (each kept change taken out of #{a['best_id']}; {conditions_text(a)})", ""]
        out += [f"- {describe(Comparison(**c), metric_name)}" for c in a["changes"]] + [""]
    return out


def write_report(journal: Journal, tag: str, task: TaskSpec, root: Path, out: Path) -> list[Path]:
    """progress.png, report.md and report.html (report/html.py) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    state = layout.state_dir(root)
    png, md = out / "progress.png", out / "report.md"
    plot_progress(journal.experiments(tag), task, png)
    md.write_text(report_markdown(journal, tag, task, state))
    return [png, md, write_html(journal, tag, task, state, out / "report.html")]
