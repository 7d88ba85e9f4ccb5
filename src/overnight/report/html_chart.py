"""The progress chart of report.html as inline SVG: autoresearch's picture, drawn server-side.

Every finished experiment is one `.pt` mark in order (kept green and labelled, discarded grey,
failed a red cross on the top strip, screened out or duplicate a hollow ring), the running best
as a step line, the baseline's noise band (its value +- 2 sd of one run) across the night and the
incumbent's band along the steps, and `overnight verify`'s fresh-seed values as diamonds. Each
mark links to its experiment's panel and carries a <title> (hover: id, status, value,
description), so the chart reads without JavaScript; page.js adds a quicker tooltip.

The y range is robust: a diverged run far off the others is drawn on the chart's edge (marked
`off`, its title gives the real value) instead of squashing every other point into a line.
"""

from __future__ import annotations

import math
from html import escape

from overnight.records import ExpStatus
from overnight.report.page_data import PageData

W, H = 1100, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 40  # margins; failures go on a strip in the top one
BAND_SD = 2.0


def _range(values: list[float], keep: list[float]) -> tuple[float, float]:
    """The y range: the values' 5th..95th percentile spread 1.5 times each way, widened to `keep`."""
    vs = sorted(values)
    if len(vs) >= 10:
        q05, q95 = vs[len(vs) // 20], vs[-(len(vs) // 20) - 1]
        spread = max(q95 - q05, 1e-12)
        lo, hi = max(vs[0], q05 - 1.5 * spread), min(vs[-1], q95 + 1.5 * spread)
    else:
        lo, hi = vs[0], vs[-1]
    lo, hi = min([lo, *keep]), max([hi, *keep])
    pad = (hi - lo) * 0.06 or abs(hi) * 0.01 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def chart_svg(page: PageData) -> str:
    done = sorted((v for v in page.experiments if v.x is not None), key=lambda v: v.x)
    sd = page.status["noise"]["sd"]
    base = page.status["baseline"]["value"]
    valued = [v for v in done if v.exp.value is not None and math.isfinite(v.exp.value)]
    verified = page.verify or {}
    fresh = [*(verified.get("baseline") or []), *(verified.get("values") or [])]
    if not valued and not fresh:
        return '<p class="empty">No experiment has a value yet: the chart starts with the baseline.</p>'
    keep = fresh + ([base - BAND_SD * sd, base + BAND_SD * sd] if base is not None and sd else [])
    best = [v.exp.value for v in valued if v.exp.status == ExpStatus.KEPT]
    lo, hi = _range([v.exp.value for v in valued] or fresh, keep + best)
    n = max(len(done), 1)

    def sx(x: float) -> float:
        return LEFT + (x + 0.5) * (W - LEFT - RIGHT) / n

    def sy(y: float) -> float:
        return TOP + (hi - min(max(y, lo), hi)) * (H - TOP - BOTTOM) / (hi - lo)

    out = [
        f'<svg id="chart" viewBox="0 0 {W} {H}" role="img" aria-label="progress: {len(done)} experiments">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}"/>',
    ]
    for t in _ticks(lo, hi):
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.6g}</text>'
        )
    xstep = max(1, round(n / 10))
    for x in range(0, n, xstep):
        out.append(f'<text class="tick" x="{sx(x):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{x}</text>')
    out.append(
        f'<text class="axis" x="{(W + LEFT) / 2}" y="{H - 6}" text-anchor="middle">'
        "experiment (finished, in order)</text>"
        f'<text class="axis" transform="translate(14 {(H - BOTTOM + TOP) / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(page.metric.name)} ({'lower' if page.metric.goal == 'minimize' else 'higher'} is better)</text>"
    )
    out += _bands(done, valued, base, sd, sx, sy)
    out += _best_line(valued, n, sx, sy)
    for v in done:
        out.append(_mark(v, sx, sy, lo, hi))
    out += _verified(page, done, sx, sy)
    out.append("</svg>")
    return "\n".join(out)


def _bands(done, valued, base, sd, sx, sy) -> list[str]:
    if not sd or base is None:
        return []
    half = BAND_SD * sd
    left, right = sx(-0.5), sx(len(done) - 0.5)
    out = [
        f'<rect class="band baseline-band" x="{left:.1f}" width="{right - left:.1f}" y="{sy(base + half):.1f}" '
        f'height="{sy(base - half) - sy(base + half):.1f}"><title>baseline {base:.6f} ± {half:.6f} '
        f"(2 sd of one run: where 95 % of its runs land)</title></rect>"
    ]
    steps = [v for v in valued if v.exp.status == ExpStatus.KEPT and v.exp.parent_id is not None]
    for i, v in enumerate(steps):
        end = sx(steps[i + 1].x) if i + 1 < len(steps) else right
        out.append(
            f'<rect class="band incumbent-band" x="{sx(v.x):.1f}" width="{max(end - sx(v.x), 1):.1f}" '
            f'y="{sy(v.exp.value + half):.1f}" height="{sy(v.exp.value - half) - sy(v.exp.value + half):.1f}">'
            f"<title>incumbent #{v.id} {v.exp.value:.6f} ± {half:.6f}</title></rect>"
        )
    return out


def _best_line(valued, n, sx, sy) -> list[str]:
    kept = [v for v in valued if v.exp.status == ExpStatus.KEPT]
    if not kept:
        return []
    points, last = [], None
    for v in kept:
        if last is not None:
            points.append(f"{sx(v.x):.1f},{sy(last):.1f}")
        points.append(f"{sx(v.x):.1f},{sy(v.exp.value):.1f}")
        last = v.exp.value
    points.append(f"{sx(n - 0.5):.1f},{sy(last):.1f}")
    return [f'<polyline class="best" points="{" ".join(points)}"><title>best so far</title></polyline>']


def _mark(v, sx, sy, lo, hi) -> str:
    e = v.exp
    kind = "failed" if e.status.failed else e.status.value
    value = f"{e.value:.6f}" if e.value is not None and math.isfinite(e.value) else "no value"
    tip = escape(f"#{e.id} {e.status.value}: {value} — {e.description}")
    x = sx(v.x)
    common = f'class="pt {kind}{{off}}" data-id="{e.id}" data-value="{value}"'
    if e.value is None or not math.isfinite(e.value) or e.status.failed:
        y = TOP - 14
        shape = (
            f'<path {common.format(off="")} d="M{x - 4:.1f},{y - 4} l8,8 m0,-8 l-8,8"><title>{tip}</title></path>'
            if e.status.failed
            else f'<circle {common.format(off="")} cx="{x:.1f}" cy="{y}" r="3.5"><title>{tip}</title></circle>'
        )
    else:
        off = " off" if not lo <= e.value <= hi else ""
        r = 5 if e.status == ExpStatus.KEPT else 3.5
        shape = (
            f'<circle {common.format(off=off)} cx="{x:.1f}" cy="{sy(e.value):.1f}" r="{r}">'
            f"<title>{tip}</title></circle>"
        )
        if e.status == ExpStatus.KEPT and e.parent_id is not None:
            shape += (
                f'<text class="label" transform="translate({x + 5:.1f} {sy(e.value) - 6:.1f}) rotate(-25)">'
                f"{escape(e.description[:40])}</text>"
            )
    return f'<a href="#exp-{e.id}">{shape}</a>'


def _verified(page: PageData, done, sx, sy) -> list[str]:
    v = page.verify
    if not v:
        return []
    where = {d.id: d.x for d in done}
    base_id = page.status["baseline"]["id"]
    out = []
    for label, xid, values in (
        ("baseline", base_id, v.get("baseline")),
        (f"best #{v.get('best_id')}", v.get("best_id"), v.get("values")),
    ):
        if xid not in where:
            continue
        for i, value in enumerate(values or []):
            x, y = sx(where[xid]) + 8 + 3 * i, sy(value)
            out.append(
                f'<path class="verified" d="M{x:.1f},{y - 5:.1f} l4,5 l-4,5 l-4,-5 z">'
                f"<title>verified {escape(label)}: {value:.6f} (fresh seed)</title></path>"
            )
    return out
