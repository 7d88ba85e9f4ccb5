"""The journal on a full disk: one clear error line, a journal that still opens whole, and a
resume with the same command that finishes the night. The full disk is SQLite's own
(`PRAGMA max_page_count` on the controller's connection), the same SQLITE_FULL a real one
gives."""

from __future__ import annotations

import sqlite3

from overnight.journal import Journal
from overnight.night.state import REBASED_KEY
from overnight.testing.toy import quiet_toy

ARGS = ("--experiments", "10", "--proposer", "random", "--judge", "greedy", "--tag", "t", "--quiet")


def test_full_disk_is_one_error_and_the_night_resumes(tmp_path, monkeypatch, cli):
    root = quiet_toy(tmp_path / "toy")
    real_init = Journal.__init__

    def small_disk(self, path):
        real_init(self, path)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count={pages + 2}")

    monkeypatch.setattr(Journal, "__init__", small_disk)
    result = cli("run", root, *ARGS)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the journal's disk is full" in lines[0] and "Traceback" not in result.output
    monkeypatch.undo()
    con = sqlite3.connect(root / ".overnight" / "journal.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
    finally:
        con.close()
    assert 1 <= done < 10  # it stopped part-way
    again = cli("run", root, *ARGS)
    assert again.exit_code == 0, (again.output, again.exception)
    j = Journal(root / ".overnight" / "journal.db")
    try:
        h = j.experiments("t")
    finally:
        j.close()
    # Ten experiments, plus one for each stale candidate the stale rule carried onto a newer
    # incumbent, if any (that rule has tests of its own; here: nothing lost, nothing doubled).
    rebased = [e for e in h if REBASED_KEY in e.params]
    assert len(h) == 10 + len(rebased) and [e.id for e in h] == list(range(1, len(h) + 1)), " | ".join(
        f"{e.id}<{e.parent_id} {e.status.value} {(e.reason or '')[:60]}" for e in h
    )
    assert all(e.status.final for e in h)
    assert h[0].status.value == "kept"
    assert len((root / ".overnight" / "t" / "results.tsv").read_text().splitlines()) == len(h) + 1
