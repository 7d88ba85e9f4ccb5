"""The prompt the llm and agent proposers send: what a human researcher would want to see.

Sections, each with its own cap so the whole prompt is bounded by PROMPT_CAP characters however
long the night runs: the task's program.md, the metric and goal, the compacted history (summary
counts, every kept change, the recent experiments, then older ones shortened until the history
cap is reached), the noise level when runs were repeated, the tail of the last crash, the
human's notes, and the editable files at the current best. Characters, not tokens: no
tokenizer to install, and ~4 characters per token is close enough for a cap.
The values of the user's credentials (credentials.py) are replaced by `[redacted NAME]`.

A model with a small context window (window.py) gets the prompt shortened to fit (`fit`), parts
giving way in SHRINK_ORDER: the oldest history first (the history keeps its summary, kept
changes and newest experiments longest), then the last crash's log, then the research program,
and last the editable files' regions no experiment has touched (elide.py, each gap marked).
The instructions, the reply format, the objective and the human's notes are never shortened.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from overnight.errors import OvernightError
from overnight.judges.noise import noise_of
from overnight.proposers.base import Context
from overnight.proposers.edits import DIVIDER, REPLACE, SEARCH
from overnight.proposers.elide import elide
from overnight.proposers.window import tokens
from overnight.records import Experiment, ExpStatus
from overnight.run import credentials

PROGRAM_CAP, FILES_CAP, HISTORY_CAP, CRASH_CAP, NOTES_CAP = 8_000, 48_000, 8_000, 2_500, 2_000
FIXED_TEXT_CAP = 5_000  # system message, headings and instructions, with room to spare
PROMPT_CAP = PROGRAM_CAP + FILES_CAP + HISTORY_CAP + CRASH_CAP + NOTES_CAP + FIXED_TEXT_CAP
RECENT, KEPT_SHOWN = 25, 15

SYSTEM = f"""You are an ML researcher running experiments overnight. Each reply proposes ONE change to
the editable files; a harness commits it, trains under a fixed time budget, measures the metric
and keeps the change only if it is really better.

Reply format (strict): first one short paragraph saying what you change and why you expect it to
help (it becomes the experiment's description), then one or more blocks like this:

path/of/the/file.py
{SEARCH}
exact lines copied from the current file
{DIVIDER}
the new lines
{REPLACE}

The SEARCH lines must match the current file exactly (indentation included) and occur once;
keep them short but unique. Edit only the editable files. Do not rewrite whole files."""

SYSTEM_JSON = """You are an ML researcher running experiments overnight. Each reply proposes ONE change to
the editable files; a harness commits it, trains under a fixed time budget, measures the metric
and keeps the change only if it is really better.

Reply format (strict): one JSON object with two fields. "description": one short paragraph
saying what you change and why you expect it to help. "edits": a list of edits, each with
"path" (an editable file), "search" (lines copied exactly from that file as shown below,
indentation and newlines included, occurring once in it: keep them short but unique) and
"replace" (the lines that take their place). Edit only the editable files. Do not rewrite whole
files."""

AGENT = """You are working in a git checkout of the current best version of the task. Make ONE
change by editing the editable files in place ({editable}). Do not edit any other file, do not
commit, and do not run the training or evaluation: the harness runs it under a fixed budget
after you finish. When you are done, write a one-line description of your change (what and why)
to the file {description_file}."""

HYBRID = (
    "Numeric constants are tuned separately (Optuna) after your move: spend this move on "
    "structure (architecture, optimizer, schedule, code), not on retuning a number."
)


def clip(text: str, cap: int, keep: str = "head") -> str:
    if len(text) <= cap:
        return text
    marker = f"\n[... {len(text) - cap} characters omitted ...]\n"
    room = max(cap - len(marker), 0)
    return text[:room] + marker if keep == "head" else marker + text[len(text) - room :]


def _v(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _line(e: Experiment, by_id: dict[int, Experiment], short: bool = False) -> str:
    parent = by_id.get(e.parent_id) if e.parent_id is not None else None
    delta = ""
    if e.value is not None and parent is not None and parent.value is not None:
        delta = f" ({e.value - parent.value:+.4g} vs #{parent.id})"
    desc = " ".join(e.description.split())[: 80 if short else 140]
    why = ""
    if (e.status.failed or e.status in (ExpStatus.DUPLICATE, ExpStatus.SCREENED)) and e.reason:
        why = " — " + " ".join(e.reason.split("\n", 1)[0].split())[: 60 if short else 120]
    who = "" if short else f" [{e.proposer}]"
    return f"#{e.id} {e.status.value} {_v(e.value)}{delta}{who}: {desc}{why}"


def _take(lines: list[str], budget: int) -> list[str]:
    """The leading lines that fit in `budget` characters."""
    out, used = [], 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        out.append(line)
        used += len(line) + 1
    return out


@dataclass(frozen=True)
class Caps:
    """Each shortenable section's characters (module docstring)."""

    history: int = HISTORY_CAP
    crash: int = CRASH_CAP
    program: int = PROGRAM_CAP
    files: int = FILES_CAP


# (part, the least it keeps) in the order parts give way to fit a window; the files keep at
# least FILES_FLOOR characters each (below that a model cannot see what to change).
SHRINK_ORDER = (("history", 300), ("crash", 0), ("program", 0), ("files", 0))
FILES_FLOOR = 1_200


def history_section(ctx: Context, cap: int = HISTORY_CAP) -> str:
    """Summary counts, then kept changes, recent failures to learn from, and older experiments
    shortened, each part within its share of `cap` (newest first when they do not fit)."""
    hist = ctx.history
    by_id = {e.id: e for e in hist}
    base = next((e for e in hist if e.parent_id is None), None)
    tried = [e for e in hist if e.parent_id is not None]
    if not tried:
        return f"Only the baseline so far ({_v(base.value if base else None)}): this is the first change of the night."
    counts: dict[str, int] = {}
    for e in hist:
        counts[e.status.value] = counts.get(e.status.value, 0) + 1
    out = [
        f"{len(hist)} experiments so far ({', '.join(f'{n} {s}' for s, n in counts.items())}). "
        f"Baseline {_v(base.value if base else None)}, current best {_v(ctx.incumbent.value)} "
        f"(#{ctx.incumbent.id})."
    ]
    kept = [e for e in tried if e.status == ExpStatus.KEPT]
    shown_kept = _take(["  " + _line(e, by_id) for e in reversed(kept[-KEPT_SHOWN:])], cap * 35 // 100)
    if kept:
        out.append("Kept changes (the current best contains them), oldest first:")
        if len(kept) > len(shown_kept):
            out.append(f"  ({len(kept) - len(shown_kept)} earlier kept changes not shown)")
        out += shown_kept[::-1]
    recent = [e for e in tried[-RECENT:] if e.status != ExpStatus.KEPT]
    shown_recent = _take(["  " + _line(e, by_id) for e in reversed(recent)], cap * 40 // 100)
    if shown_recent:
        out.append("Recent experiments that were not kept, newest last:")
        out += shown_recent[::-1]
    shown = {e.id for e in kept[-len(shown_kept) :]} if shown_kept else set()
    shown |= {e.id for e in recent[len(recent) - len(shown_recent) :]}
    older = [e for e in reversed(tried) if e.id not in shown]
    if older:
        room = cap - sum(len(x) + 1 for x in out) - 120
        lines = _take(["  " + _line(e, by_id, short=True) for e in older], room)
        out.append("Earlier experiments, newest first, shortened:")
        out += lines
        if len(lines) < len(older):
            out.append(f"  ({len(older) - len(lines)} more not shown)")
    return clip("\n".join(out), cap)


def crash_section(ctx: Context, cap: int = CRASH_CAP) -> str:
    if cap <= 200:
        return ""
    for e in reversed(ctx.history):
        last = e.last_run
        if e.status in (ExpStatus.CRASHED, ExpStatus.TIMEOUT, ExpStatus.INVALID) and last and last.log_tail:
            head = f"#{e.id} ({e.status.value}): {' '.join(e.description.split())[:160]}\n"
            return head + "```\n" + clip(last.log_tail.strip(), cap - len(head) - 10, keep="tail") + "\n```"
    return ""


def notes_section(ctx: Context) -> str:
    kept: list[str] = []
    for note in reversed(ctx.notes):  # the newest notes win when they do not all fit
        line = "- " + " ".join(note.split())
        if sum(len(x) + 1 for x in kept) + len(line) > NOTES_CAP:
            break
        kept.insert(0, clip(line, NOTES_CAP))
    return "\n".join(kept)


def files_section(ctx: Context, cap: int = FILES_CAP) -> str:
    per_file = max(cap // max(len(ctx.incumbent_files), 1) - 40, FILES_FLOOR)
    parts = []
    for path, text in ctx.incumbent_files.items():
        lang = "python" if path.endswith(".py") else ""
        shown = elide(text, ctx.baseline_files.get(path), per_file)
        parts.append(f"## {path}\n```{lang}\n{shown}\n```")
    return "\n\n".join(parts)


def program_text(ctx: Context) -> str:
    path = Path(ctx.task.root) / "program.md"
    return path.read_text(errors="replace") if path.is_file() else ""


def build(
    ctx: Context, mode: str = "llm", description_file: str = "", caps: Caps = Caps(), reply_format: str = "text"
) -> tuple[str, str]:
    """(system, user) for mode "llm", "hybrid" (llm, structural moves) or "agent";
    `reply_format` "json": the edit asked for as a JSON object (llm_reply.py)."""
    m, t = ctx.task.metric, ctx.task
    sections = []
    program = program_text(ctx)
    if program.strip() and caps.program > 200:
        sections.append("# Research program\n\n" + clip(program.strip(), caps.program))
    goal = "lower is better" if m.goal == "minimize" else "higher is better"
    objective = (
        f"Metric: {m.name} ({m.goal}: {goal}). Each run trains for {t.budget:g} s. "
        f"Editable: {', '.join(t.editable)}. Protected: {', '.join(t.protected)}."
    )
    pooled = noise_of(ctx.history)  # the judge's own estimate: one definition of "noise"
    noise = pooled.sd if pooled.known else None
    if noise is not None:
        objective += (
            f"\nNoise: repeated runs of the same code differ by a standard deviation of "
            f"{noise:.3g}; smaller differences are not real."
        )
    sections.append("# Objective\n\n" + objective)
    sections.append("# History\n\n" + history_section(ctx, caps.history))
    crash = crash_section(ctx, caps.crash)
    if crash:
        sections.append("# Last failed run (log tail)\n\n" + crash)
    notes = notes_section(ctx)
    if notes:
        sections.append("# Notes from the human (follow them)\n\n" + notes)
    if mode != "agent":
        which = f"#{ctx.incumbent.id}" if ctx.incumbent.parent_id is not None else "the baseline"
        sections.append(f"# Files at the current best ({which})\n\n" + files_section(ctx, caps.files))
    ask = "Propose your next experiment: one short paragraph (what and why), then SEARCH/REPLACE blocks."
    if reply_format == "json":
        ask = "Propose your next experiment as the JSON object described: a description and its edits."
    if mode == "hybrid":
        ask += " " + HYBRID
    if mode == "agent":
        ask = AGENT.format(editable=", ".join(t.editable), description_file=description_file)
    sections.append("# Your move\n\n" + ask)
    # Log tails and failure reasons are what a run printed: a credential it got hold of (one
    # the task passes it, or one read from a file) is not sent to the model's provider.
    user = credentials.redact("\n\n".join(sections) + "\n")
    system = SYSTEM_JSON if reply_format == "json" else SYSTEM
    return system if mode != "agent" else "", user


def size(system: str, user: str) -> int:
    return len(system) + len(user)


def _shown(ctx: Context, part: str, caps: Caps) -> int:
    """The characters section `part` takes under `caps`."""
    if part == "history":
        return len(history_section(ctx, caps.history))
    if part == "crash":
        return len(crash_section(ctx, caps.crash))
    if part == "program":
        return len(clip(program_text(ctx).strip(), caps.program))
    return len(files_section(ctx, caps.files))


def fit(
    ctx: Context, mode: str, limit: int, description_file: str = "", reply_format: str = "text"
) -> tuple[str, str, list[str]]:
    """(system, user, the parts shortened) within `limit` characters: the parts give way in
    SHRINK_ORDER. One line naming the size needed when even the shortest prompt does not fit."""
    caps, shortened = Caps(), []
    system, user = build(ctx, mode, description_file, caps, reply_format)
    for part, floor in SHRINK_ORDER:
        for _ in range(3):  # sections are cut to about their cap: look again after each cut
            over = size(system, user) - limit
            if over <= 0:
                return system, user, shortened
            now = min(getattr(caps, part), _shown(ctx, part, caps))  # a cap above the text cuts nothing
            if now <= floor:
                break
            caps = replace(caps, **{part: max(floor, now - over - 100)})
            shortened += [part] if part not in shortened else []
            system, user = build(ctx, mode, description_file, caps, reply_format)
    if size(system, user) <= limit:
        return system, user, shortened
    raise OvernightError(
        f"the prompt needs about {tokens(size(system, user)):,} tokens even shortened (instructions, "
        f"notes and the least of the files), over the {tokens(limit):,} the model's window leaves it — "
        "serve the model with a larger context (llama.cpp --ctx-size, Ollama num_ctx) or, if its "
        "window is larger than assumed, pass --context-tokens"
    )
