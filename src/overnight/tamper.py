"""The journal's tamper check: whether someone else wrote a tag's experiments or runs.

The controller is the only writer of its tag's experiments and runs. SQLite's `data_version`
changes only when ANOTHER connection commits, so a change of it plus a change of those rows
means someone else (e.g. a candidate that found journal.db) wrote them; the night stops.
Each of our writes looks, writes and takes its snapshot in one write transaction
(`own_write`), so no other connection can commit in between and have its change taken for
ours. Not caught: a change that keeps the columns hashed here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading


class TamperCheck:
    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.tag: str | None = None  # the tag whose rows only this connection may change
        self.seen = False  # a change by someone else was found before one of our writes
        self._known = self._version = None
        # The connection is shared by the controller's threads; a transaction is the
        # connection's, so one thread at a time may be inside one.
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE: other connections' writes wait until it
        ends); inside one already, just part of it."""
        with self._lock:
            if self.db.in_transaction:
                yield
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self.db.execute("ROLLBACK")
                raise

    def claim(self, tag: str) -> None:
        self.tag = tag
        self.sync()

    def sync(self) -> None:
        """Remember the rows as they are now (after a write of ours)."""
        if self.tag is not None:
            self._version = self.db.execute("PRAGMA data_version").fetchone()[0]
            self._known = self._digest()

    def changed(self) -> bool:
        """Whether another connection changed the watched tag's experiments or runs since our
        last look (a note from `overnight note` is not a change of those)."""
        if self.tag is None:
            return False
        with self._lock:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._version:
                return False
            self._version = version
            return self._digest() != self._known

    def _digest(self) -> str:
        h = hashlib.sha256()
        for row in self.db.execute(
            "SELECT id, parent_id, status, value, commit_sha, length(edits), decided"
            " FROM experiments WHERE tag=? ORDER BY id",
            (self.tag,),
        ):
            h.update(repr(tuple(row)).encode())
        for row in self.db.execute(
            "SELECT r.id, r.experiment_id, r.status, r.value, r.seed, r.rescored FROM runs r"
            " JOIN experiments e ON e.id = r.experiment_id WHERE e.tag=? ORDER BY r.id",
            (self.tag,),
        ):
            h.update(repr(tuple(row)).encode())
        return h.hexdigest()


def own_write(method):
    """A journal method that writes experiments or runs: look for someone else's changes first,
    then write, then remember the rows as they now are (the journal's `tamper`), all in one
    write transaction: a commit by another connection between our write and the snapshot
    would otherwise be remembered as ours, and never caught."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.tamper.transaction():
            if self.tamper.changed():
                self.tamper.seen = True
            out = method(self, *args, **kwargs)
            self.tamper.sync()
        return out

    return wrapper
