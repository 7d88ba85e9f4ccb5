"""What the model-driven proposers cost: tokens, money, fallbacks, summed from the journal.

Each llm proposal carries its own usage in its params (tokens in and out, calls, cost when
prices were set), so these figures are a pure function of the journal: `status --json` key
`llm` and the report's "Model usage" section are drawn from `usage_summary`.
"""

from __future__ import annotations

from overnight.records import EventKind, Experiment, ExpStatus

FALLBACK_EVENTS = (EventKind.FALLBACK, EventKind.FALLBACK_END)


def usage_summary(history: list[Experiment], events: list[dict]) -> dict:
    usages = [e.params["usage"] for e in history if isinstance(e.params.get("usage"), dict)]
    costs = [u["cost_usd"] for u in usages if u.get("cost_usd") is not None]
    cost = sum(costs) if costs else None
    # Every kept improvement counts, whoever proposed it: in hybrid the tuner's gains build on
    # the model's moves, and a fallback's gains were paid for by the model's failures too.
    kept = sum(e.status == ExpStatus.KEPT and e.parent_id is not None for e in history)
    switches = [ev for ev in events if ev["kind"] in FALLBACK_EVENTS]
    return {
        "proposals": len(usages),
        "rejected": sum(e.status == ExpStatus.REJECTED and "usage" in e.params for e in history),
        "calls": sum(int(u.get("calls", 0)) for u in usages),
        "tokens_in": sum(int(u.get("tokens_in", 0)) for u in usages),
        "tokens_out": sum(int(u.get("tokens_out", 0)) for u in usages),
        "tokens_estimated": any(u.get("estimated") for u in usages),
        "cost_usd": cost,
        "kept": kept,
        "cost_per_kept": cost / kept if cost is not None and kept else None,
        "fallback": bool(switches) and switches[-1]["kind"] == EventKind.FALLBACK,
        "fallback_proposals": sum("fallback_for" in e.params for e in history),
        "fallback_message": switches[-1]["message"]
        if switches and switches[-1]["kind"] == EventKind.FALLBACK
        else None,
    }


def usage_markdown(u: dict) -> list[str]:
    """The report's section; empty when no model proposed anything."""
    if not u["proposals"] and not u["fallback_proposals"]:
        return []
    est = " (estimated: the server sent no usage)" if u["tokens_estimated"] else ""
    cost = "not configured (--price-in/--price-out)" if u["cost_usd"] is None else f"${u['cost_usd']:.4f}"
    per_kept = "-" if u["cost_per_kept"] is None else f"${u['cost_per_kept']:.4f}"
    out = [
        "## Model usage",
        "",
        f"- model proposals: {u['proposals']} ({u['rejected']} rejected edits), {u['calls']} calls",
        f"- tokens: {u['tokens_in']:,} in, {u['tokens_out']:,} out{est}",
        f"- cost: {cost}; per kept improvement: {per_kept} ({u['kept']} kept)",
    ]
    if u["fallback_proposals"] or u["fallback"]:
        now = " — still on the fallback now" if u["fallback"] else ""
        out.append(f"- endpoint down: {u['fallback_proposals']} proposals came from the optuna fallback{now}")
    return out + [""]


def usage_line(u: dict) -> str | None:
    """One line for the terminal status view."""
    if not u["proposals"] and not u["fallback_proposals"]:
        return None
    cost = "" if u["cost_usd"] is None else f", ${u['cost_usd']:.4f}"
    line = (
        f"model: {u['proposals']} proposals ({u['rejected']} rejected), {u['tokens_in']:,} tokens in, "
        f"{u['tokens_out']:,} out{cost}"
    )
    if u["fallback"]:
        line += "; endpoint down, proposing with optuna"
    return line
