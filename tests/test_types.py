"""Statuses, event kinds, screening verdicts and the lifecycle's steps are enums end to end
(issue 32): no code in src/ compares one with a string literal, where a typo would be a branch
that never runs. The stored strings are the enums' values, unchanged.

Out of scope: the built-in tasks (written into users' repositories, no harness import) and the
test helpers' own formats (testing/: a fake server's fault kinds, timing stamps); a knob's
`kind` (cat/int/float/pow2) is a type of the search space, not a state.
"""

from __future__ import annotations

import ast
from pathlib import Path

from overnight.records import EventKind

SRC = Path(__file__).resolve().parent.parent / "src" / "overnight"
STATE_NAMES = {"status", "action", "verdict", "step", "kind"}
SKIP = ("tasks/", "testing/")


def _names_state(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in STATE_NAMES - {"kind"}  # knob.kind: a search-space type
    if isinstance(node, ast.Name):
        return node.id in STATE_NAMES
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value in STATE_NAMES  # an event's ["kind"], a screen decision's ["verdict"]
    return False


def _is_text(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
        return all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
    return False


def string_comparisons(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_state(s) for s in sides) and any(_is_text(s) for s in sides):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_state_is_compared_with_a_string_literal():
    found = [
        f"{p.relative_to(SRC)}:{hit}"
        for p in sorted(SRC.rglob("*.py"))
        if not str(p.relative_to(SRC)).startswith(SKIP)
        for hit in string_comparisons(p.read_text())
    ]
    assert not found, f"compare with the enum instead: {found}"


def test_the_check_finds_what_it_is_for():
    bad = 'if e.status == "kept": pass\nif ev["kind"] in ("drift", "oom"): pass\nif action != "decided": pass\n'
    assert len(string_comparisons(bad)) == 3
    assert string_comparisons('if e.status == ExpStatus.KEPT: pass\nif k.kind == "cat": pass\n') == []


def test_event_kinds_are_stored_as_their_strings(tmp_path):
    from overnight.journal import Journal

    j = Journal(tmp_path / "j.db")
    j.add_tag("t", "0" * 40, {})
    j.event("t", EventKind.SCREEN_OFF, "why")
    row = j.db.execute("SELECT kind, typeof(kind) FROM events").fetchone()
    assert tuple(row) == ("screen-off", "text")
    assert [e["kind"] for e in j.events("t", EventKind.SCREEN_OFF)] == [EventKind.SCREEN_OFF]


def test_the_scheduler_reads_nothing_private_of_the_asker_or_the_rescorer():
    """It asks them (asker.idle, failed, futures; rescorer.idle, busy, released, held_by), it
    does not reach into their state: their bookkeeping can change without the loop noticing."""
    private = {"asking", "pending", "holding", "checks", "waiting", "owner"}
    tree = ast.parse((SRC / "night" / "scheduler.py").read_text())
    reached = [
        f"{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in private
        and isinstance(node.value, ast.Attribute)
        and node.value.attr in ("asker", "rescorer")
    ]
    assert not reached, reached


def finish_calls(source: str) -> list[str]:
    """Calls of a `.finish(...)` in `source`, but a tracker run's (`run.finish()`: W&B, MLflow)."""
    return [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "finish"
        and ast.unparse(node.func.value) != "run"
    ]


def test_a_candidates_fate_is_decided_in_the_lifecycle_alone():
    """Night.finish (journal, branch, proposer told) has one caller: Lifecycle.finish, which the
    rest of the lifecycle and the planner go through. A new path to an experiment's end must be
    a request the lifecycle applies, not a call from elsewhere."""
    elsewhere = {
        str(p.relative_to(SRC)): calls
        for p in SRC.rglob("*.py")
        if str(p.relative_to(SRC)) != "night/lifecycle.py" and (calls := finish_calls(p.read_text()))
    }
    plan = finish_calls((SRC / "night" / "plan.py").read_text())
    assert set(elsewhere) == {"night/plan.py"} and all(c.startswith("self.lifecycle.finish(") for c in plan), elsewhere
    inside = finish_calls((SRC / "night" / "lifecycle.py").read_text())
    night_calls = [c for c in inside if not c.startswith("self.finish(")]
    assert night_calls == ["n.finish(e, fin.status, reason, fin.value)"], inside
    # and the check sees what it is for
    assert finish_calls("n.finish(e, s, r)\nrun.finish()\nself.night.finish(x)\n") == [
        "n.finish(e, s, r)",
        "self.night.finish(x)",
    ]
