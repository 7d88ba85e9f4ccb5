"""An editable file shortened to fit a model's window: what the night changed stays, the regions
no experiment has touched give way, each gap marked.

The lines changed since the baseline (with a few lines around each) are kept first, then the
file from the top (where a training script's constants and model are), until the characters
allowed are used. Each run of omitted lines becomes one marker line naming them, so the model
knows the file goes on and that a SEARCH must be copied from the lines it was shown (an edit of
shown lines applies to the whole file: the harness applies it, not the model).
"""

from __future__ import annotations

import difflib

CONTEXT_LINES = 3  # kept around each changed line


def marker(first: int, last: int) -> str:
    """The line standing for lines first..last (1-based) left out."""
    what = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"[... {what} not shown: unchanged since the baseline; copy SEARCH text only from lines shown ...]"


def changed_lines(base: str, text: str) -> set[int]:
    """0-based indexes of the lines of `text` that differ from `base` (inserted or replaced)."""
    out: set[int] = set()
    matcher = difflib.SequenceMatcher(None, base.split("\n"), text.split("\n"), autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.update(range(j1, max(j2, j1 + 1)))  # a deletion: the line after it
    return out


def render(lines: list[str], keep: set[int]) -> str:
    out, i = [], 0
    while i < len(lines):
        if i in keep:
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and j not in keep:
            j += 1
        out.append(marker(i + 1, j))
        i = j
    return "\n".join(out)


def elide(text: str, base: str | None, cap: int) -> str:
    """`text` within about `cap` characters (module docstring); whole when it fits."""
    if len(text) <= cap:
        return text
    lines = text.split("\n")
    changed = changed_lines(base, text) if base is not None and base != text else set()
    near = sorted({j for i in changed for j in range(i - CONTEXT_LINES, i + CONTEXT_LINES + 1) if 0 <= j < len(lines)})
    budget = cap
    for _ in range(8):  # the markers take room too: fit again with less when they did not fit
        keep: set[int] = set()
        used = 0
        for i in [*near, *range(len(lines))]:
            if i in keep:
                continue
            cost = len(lines[i]) + 1
            if used + cost > budget:
                if i in near:
                    continue  # a long changed line: the next may fit
                break  # from the top: stop at the first line that does not fit
            keep.add(i)
            used += cost
        shown = render(lines, keep)
        if len(shown) <= cap:
            return shown
        budget -= len(shown) - cap + 50
    return shown
