"""What the model-driven proposers cost: tokens, money, fallbacks, summed from the journal.

Each llm proposal carries its own usage in its params (tokens in and out, calls, cost when
prices were set), so these figures are a pure function of the journal: `status --json` key
`llm` and the report's "Model usage" section are drawn from `usage_summary`.
"""

from __future__ import annotations

from overnight.records import EventKind, Experiment, ExpStatus

FALLBACK_EVENTS = (EventKind.FALLBACK, EventKind.FALLBACK_END)
BENCH_EVENTS = (EventKind.MODEL_UNUSABLE, EventKind.MODEL_USABLE)


def _last(events: list[dict], kinds: tuple[EventKind, EventKind]) -> str | None:
    """The message of the latest of `kinds` when it is the first kind (the state is on), else None."""
    switches = [ev for ev in events if ev["kind"] in kinds]
    return switches[-1]["message"] if switches and switches[-1]["kind"] == kinds[0] else None


def usage_summary(history: list[Experiment], events: list[dict]) -> dict:
    usages = [e.params["usage"] for e in history if isinstance(e.params.get("usage"), dict)]
    costs = [u["cost_usd"] for u in usages if u.get("cost_usd") is not None]
    cost = sum(costs) if costs else None
    # Every kept improvement counts, whoever proposed it: in hybrid the tuner's gains build on
    # the model's moves, and a fallback's gains were paid for by the model's failures too.
    kept = sum(e.status == ExpStatus.KEPT and e.parent_id is not None for e in history)
    down, benched = _last(events, FALLBACK_EVENTS), _last(events, BENCH_EVENTS)
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
        "fallback": down is not None,
        "fallback_proposals": sum("fallback_for" in e.params for e in history),
        "fallback_message": down,
        # the model's edits could not be used, proposals in a row: optuna stands in (llm.py)
        "unusable": benched is not None,
        "unusable_message": benched,
        "unusable_spells": sum(ev["kind"] == EventKind.MODEL_UNUSABLE for ev in events),
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
    if u["unusable_spells"]:
        now = f" — still now: {u['unusable_message']}" if u["unusable"] else " (it recovered)"
        spells = u["unusable_spells"]
        out.append(f"- the model could not follow the edit format: {spells} spell(s) of unusable replies{now}")
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
    if u["unusable"]:
        line += "; the model's edits could not be used: optuna stands in"
    return line
