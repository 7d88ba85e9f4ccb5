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
