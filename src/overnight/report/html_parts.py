"""report.html's experiments: one table row and one panel per experiment, as HTML strings.

The row carries a `data-v` sort key in every cell and the status in `data-status` (page.js sorts
and filters on them); the panel (`<section class="panel" id="exp-N">`) opens on `#exp-N`
(page.js; html.py ships it as inert text until then). Everything that came from a
candidate, a model or a log is escaped: a description or a reply may hold any text.
"""

from __future__ import annotations

import json
import math
import time
from html import escape

from overnight.records import Run, RunStatus
from overnight.report.page_data import ExpView, rebased_from

COLUMNS = (  # (label, sort type): the table's header, in order
    ("id", "num"),
    ("verdict", "text"),
    ("value per seed", "num"),
    ("gain (95 % CI)", "num"),
    ("proposer", "text"),
    ("budget s", "num"),
    ("duration", "num"),
    ("memory", "num"),
    ("description", "text"),
)


def num(v: float | None, digits: int = 6) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def signed(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.6f}"


def when(t: float | None) -> str:
    return "–" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def seconds(s: float | None) -> str:
    if not s:
        return "–"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def key(v: float | None) -> str:
    """A sort key: missing or infinite values sort last either way (page.js reads "" as such)."""
    return "" if v is None or not math.isfinite(v) else repr(v)


def gain_cell(v: ExpView) -> str:
    if v.gain is None:
        return "–"
    ci = f' <span class="ci">[{signed(v.low)}, {signed(v.high)}]</span>' if v.low is not None else ""
    cls = "good" if v.low is not None and v.low > 0 else "bad" if v.high is not None and v.high < 0 else ""
    return f'<span class="{cls}">{signed(v.gain)}</span>{ci}'


def row(v: ExpView) -> str:
    e = v.exp
    reason = (e.reason or "").strip()
    short = " · ".join(line.strip() for line in reason.splitlines() if line.strip())  # a crash's why is line 2
    short = short if len(short) <= 90 else short[:89] + "…"
    seeds = v.seed_values
    values = " ".join(f'<span title="seed {s}">{x:.6f}</span>' for s, x in seeds[:6])
    if len(seeds) > 6:
        values += f" <span>… {len(seeds)} runs</span>"
    if e.value is not None and len(seeds) > 1:
        values = f"<b>{num(e.value)}</b> = mean of " + values
    cells = (
        (key(e.id), f'<a href="#exp-{e.id}">#{e.id}</a>'),
        (
            e.status.value,
            f'<span class="badge {e.status.value}">{e.status.value}</span> '
            f'<span class="reason" title="{escape(reason)}">{escape(short)}</span>',
        ),
        (key(e.value), values or ("–" if e.value is None else num(e.value))),
        (key(v.gain), gain_cell(v)),
        (escape(e.proposer), escape(e.proposer)),
        (key(max((r.budget or 0 for r in e.runs), default=None)), escape(v.budget) or "–"),
        (key(v.duration or None), seconds(v.duration)),
        (key(e.peak_memory_mb), "–" if e.peak_memory_mb is None else f"{e.peak_memory_mb:.0f} MB"),
        (escape(e.description[:200]), escape(e.description[:200])),
    )
    tds = "".join(f'<td data-v="{k}">{html}</td>' for k, html in cells)
    return f'<tr id="row-{e.id}" data-status="{e.status.value}" data-id="{e.id}">{tds}</tr>'


def events_list(events: list[dict]) -> str:
    """Journal events as a list: when, kind, message."""
    items = "".join(
        f"<li><span class='when'>{when(ev['time'])}</span> <b>{escape(ev['kind'])}</b> "
        f"{escape(ev['message'] or '')}</li>"
        for ev in events
    )
    return f'<ul class="events">{items}</ul>'


def diff_html(diff: str | None) -> str:
    if not diff:
        return '<p class="empty">No diff (the baseline, or a proposal that was never committed).</p>'
    lines = []
    for line in diff.rstrip("\n").split("\n"):
        cls = (
            "meta"
            if line.startswith(("diff ", "index ", "--- ", "+++ "))
            else "hunk"
            if line.startswith("@@")
            else "add"
            if line.startswith("+")
            else "del"
            if line.startswith("-")
            else None
        )
        lines.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line))  # context: plain
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _run_row(r: Run) -> str:
    err = (r.error or "").splitlines()[0][:160] if r.error else ""
    ok = r.status == RunStatus.OK
    return (
        f'<tr class="run-{r.status.value}"><td>{r.id}</td><td>{"screen" if r.screen else "full"}</td>'
        f"<td>{r.seed}</td><td>{r.status.value}</td><td>{num(r.value) if ok else '–'}</td>"
        f"<td>{num(r.rescored)}</td><td>{'–' if r.budget is None else f'{r.budget:g}'}</td>"
        f"<td>{seconds(r.training_seconds)}</td><td>{seconds(r.wall_seconds)}</td>"
        f"<td>{'–' if r.peak_memory_mb is None else f'{r.peak_memory_mb:.0f} MB'}</td>"
        f"<td>{escape(' '.join(x for x in (r.slot or '', r.node or '') if x)) or '–'}</td>"
        f"<td>{escape(err)}</td></tr>"
    )


def panel(v: ExpView, metric_name: str) -> str:
    e = v.exp
    facts = [
        ("proposer", escape(e.proposer)),
        ("parent", f'<a href="#exp-{e.parent_id}">#{e.parent_id}</a>' if e.parent_id else "none (the baseline)"),
        ("commit", escape(e.commit_sha or "–")),
        ("verdict", f'<span class="badge {e.status.value}">{e.status.value}</span> {escape(e.reason or "")}'),
        (metric_name, num(e.value)),
        ("gain over parent", gain_cell(v)),
        ("proposed / decided", f"{when(e.created)} / {when(e.decided)}"),
    ]
    origin = rebased_from(e)
    if origin is not None:
        facts.append(("rebased", f'from <a href="#exp-{origin}">#{origin}</a> onto #{e.parent_id}'))
    params = {k: val for k, val in e.params.items() if k not in ("usage", "replies", "agent_log")}
    if params:
        facts.append(("params", f"<code>{escape(json.dumps(params, default=str)[:600])}</code>"))
    if isinstance(e.params.get("usage"), dict):
        u = e.params["usage"]
        cost = f", ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else ""
        facts.append(("model usage", f"{u.get('tokens_in', 0):,} tokens in, {u.get('tokens_out', 0):,} out{cost}"))
    out = [
        f'<section class="panel" id="exp-{e.id}" data-id="{e.id}" aria-label="experiment {e.id}">',
        '<a class="close" href="#experiments" title="close">×</a>',
        f"<h3>#{e.id} <span class='badge {e.status.value}'>{e.status.value}</span> {escape(e.description)}</h3>",
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in facts) + "</dl>",
        "<h4>Diff</h4>",
        diff_html(e.diff),
    ]
    runs = [*e.screens, *e.runs]
    if runs:
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "run",
                "kind",
                "seed",
                "status",
                "value",
                "re-scored",
                "budget",
                "training",
                "wall",
                "memory",
                "where",
                "error",
            )
        )
        out += ["<h4>Runs</h4>", f'<table class="runs"><tr>{head}</tr>', *(_run_row(r) for r in runs), "</table>"]
    if v.events:
        out += ["<h4>Events (re-score, rebase, guards)</h4>", events_list(v.events)]
    if v.log_tail:
        where = f' <span class="path">{escape(v.log_path)}</span>' if v.log_path else ""
        out += [f"<h4>Log tail{where}</h4>", f'<pre class="log">{escape(v.log_tail)}</pre>']
    if v.reply is not None or v.reply_path:
        title = "Agent log" if "agent_log" in e.params else "Model reply"
        where = f' <span class="path">{escape(v.reply_path or "")}</span>'
        out += [f"<h4>{title}{where}</h4>", f'<pre class="reply">{escape(v.reply or "(file missing)")}</pre>']
    out.append("</section>")
    return "\n".join(out)
