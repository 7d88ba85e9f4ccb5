"""Never pay twice for the same idea: a candidate whose files were already measured is not run.

A model stuck in a loop proposes the same edit again and again; a knob search proposes a
configuration it already tried (floats are written with 4 significant digits, so values within
that rounding make the same file). Two commits with the same tree hold the same files, so a
candidate whose tree equals that of an experiment already measured (or being measured) — on
the same parent or any other — would only repeat that experiment's runs. It is journaled as
`duplicate` with the earlier experiment's result, the proposer is told (the prompt's history
says "already tried as #N: result"), and it costs no training run; it still counts as an
experiment, so a night of nothing but duplicates ends.

A candidate discarded for want of evidence (its last run left it between the futility stop and
the keep threshold: "not confirmed in N runs") was not found worse, only not found better: the
same files proposed again are measured again, up to UNDECIDED_TRIES times in all; after that the
latest try answers.
"""

from __future__ import annotations

from pathlib import Path

from overnight import gitops
from overnight.judges.noise import UNDECIDED
from overnight.records import Experiment, ExpStatus

NEVER_MEASURED = (ExpStatus.REJECTED, ExpStatus.DUPLICATE)
UNDECIDED_TRIES = 2  # tries of the same files that ended undecided before they are answered from the journal


def undecided(e: Experiment) -> bool:
    """Discarded for want of evidence, not for being worse (judges/noise.py's UNDECIDED)."""
    return e.status == ExpStatus.DISCARDED and (e.reason or "").startswith(UNDECIDED)


def measured(e: Experiment) -> bool:
    """Whether `e`'s files were (or are being) measured: kept (the baseline and every kept
    change), run at least once, or committed and waiting for its first run."""
    if e.commit_sha is None or e.status in NEVER_MEASURED or undecided(e):
        return False
    return e.status == ExpStatus.KEPT or bool(e.runs) or not e.status.final


def find_original(root: Path, exp: Experiment, history: list[Experiment], cache: dict[str, str]) -> Experiment | None:
    """The earliest measured experiment with `exp`'s tree, or None. `cache` maps commit to tree
    across calls (commits never change), so a night asks git once per commit."""
    others = [e for e in history if e.id != exp.id and measured(e)]
    tries = [e for e in history if e.id != exp.id and undecided(e) and e.commit_sha]
    unknown = [c for c in {exp.commit_sha, *(e.commit_sha for e in others + tries)} if c not in cache]
    cache.update(gitops.trees(root, unknown))
    tree = cache[exp.commit_sha]
    found = next((e for e in others if cache[e.commit_sha] == tree), None)
    same = [e for e in tries if cache[e.commit_sha] == tree]
    return found or (same[-1] if len(same) >= UNDECIDED_TRIES else None)


def result_text(original: Experiment) -> str:
    """What the earlier experiment found, as the proposer and the user read it."""
    if not original.status.final:
        return "still being measured"
    value = "" if original.value is None else f" {original.value:.6g}"
    return f"{original.status.value}{value}"


def reason(original: Experiment) -> str:
    return f"already tried as #{original.id}: {result_text(original)} — the same files, not run again"
