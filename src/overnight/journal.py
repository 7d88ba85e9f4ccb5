"""The journal: SQLite (WAL) in `.overnight/journal.db`, written before every state change.

Two levels, as in DESIGN.md: an **experiment** is one candidate (one commit on top of its
parent), a **run** is one seeded execution of it. Every write is its own transaction, so a
controller killed with SIGKILL leaves a journal that says exactly what was in flight; `recover`
turns runs left `running` into `interrupted` and puts their experiments back in the queue.
The rows come back as records.py's `Experiment` and `Run`, their statuses as its enums. A
write by another connection to the rows of the tag this one watches is caught (tamper.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from overnight.records import EventKind, Experiment, ExpStatus, Run, RunResult, RunStatus
from overnight.results_tsv import write_results_tsv
from overnight.tamper import TamperCheck, own_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT PRIMARY KEY, base_commit TEXT NOT NULL, created REAL NOT NULL, config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL REFERENCES tags(tag),
    parent_id INTEGER, base_commit TEXT NOT NULL, commit_sha TEXT, edits TEXT NOT NULL,
    diff TEXT, description TEXT NOT NULL, proposer TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, value REAL, created REAL NOT NULL, updated REAL NOT NULL,
    decided REAL  -- when the final status was set; the incumbent is the last kept one
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    seed INTEGER NOT NULL, slot TEXT, node TEXT, status TEXT NOT NULL, started REAL NOT NULL,
    ended REAL, training_seconds REAL, wall_seconds REAL, exit_code INTEGER, peak_memory_mb REAL,
    value REAL, summary TEXT, log_path TEXT, log_tail TEXT, error TEXT,
    rescored REAL,  -- what the protected re-score computed, once it agreed (NULL: not re-scored)
    budget REAL,  -- the seconds the run was given (OVERNIGHT_BUDGET)
    screen INTEGER NOT NULL DEFAULT 0  -- 1: a screen run at a fraction of the budget (never judged)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT, time REAL NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_by_tag ON experiments(tag, id);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment_id, id);
"""


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue our own transactions; each write of experiments or runs is
        # one (tamper.own_write), any other write one statement.
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self._migrate()
        self.tamper = TamperCheck(self.db)

    @classmethod
    def reader(cls, path: Path) -> Journal:
        """A read-only view of a journal another process may be writing (`overnight serve`):
        opened with SQLite's mode=ro, so no schema, no migration and no write can happen through
        it. A journal from before a column was added reads with that column's default."""
        self = cls.__new__(cls)
        self.path = Path(path)
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.tamper = TamperCheck(self.db)
        return self

    def data_version(self) -> int:
        """SQLite's counter of commits by OTHER connections: a reader's cue that something changed."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _migrate(self) -> None:
        """Columns added since the first release, added to an older journal in place (never
        renamed). runs.rescored: journals written when every run was re-scored inside it kept
        the value in the run's summary only. runs.budget, runs.screen: before screening, every
        run had the task's budget (NULL, 0)."""
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        for name, decl in (("budget", "REAL"), ("screen", "INTEGER NOT NULL DEFAULT 0")):
            if name not in cols:
                try:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError:  # another connection added it first
                    pass
        if "rescored" not in cols:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ALTER TABLE runs ADD COLUMN rescored REAL")
                self.db.execute(
                    "UPDATE runs SET rescored = json_extract(summary, '$.rescored')"
                    " WHERE status = 'ok' AND json_valid(summary)"
                )
                self.db.execute("COMMIT")
            except sqlite3.OperationalError:  # another connection migrated it first
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")

    # --- tamper check (tamper.py) ------------------------------------------------------------
    def claim(self, tag: str) -> None:
        """From here on, only this connection may change `tag`'s experiments and runs."""
        self.tamper.claim(tag)

    def tampered(self) -> bool:
        """Whether another connection changed the watched tag's experiments or runs since our
        last look (a note from `overnight note` is not a change of those)."""
        return self.tamper.changed()

    @property
    def tamper_seen(self) -> bool:
        """A change by someone else was found before one of our writes."""
        return self.tamper.seen

    def close(self) -> None:
        self.db.close()

    # --- tags -----------------------------------------------------------------------------
    def tag_info(self, tag: str) -> dict | None:
        row = self.db.execute("SELECT * FROM tags WHERE tag=?", (tag,)).fetchone()
        return None if row is None else {**dict(row), "config": json.loads(row["config"])}

    def add_tag(self, tag: str, base_commit: str, config: dict) -> None:
        self.db.execute("INSERT INTO tags VALUES (?,?,?,?)", (tag, base_commit, time.time(), json.dumps(config)))

    def tags(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT tag FROM tags ORDER BY created, rowid")]

    # --- experiments ------------------------------------------------------------------------
    @own_write
    def add_experiment(
        self,
        tag: str,
        parent_id: int | None,
        base_commit: str,
        description: str,
        proposer: str,
        params: dict,
        edits: dict[str, str],
    ) -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO experiments (tag, parent_id, base_commit, edits, description, proposer, params,"
            " status, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                tag,
                parent_id,
                base_commit,
                json.dumps(edits),
                description,
                proposer,
                json.dumps(params, default=str),
                ExpStatus.PROPOSED.value,
                now,
                now,
            ),
        )
        return int(cur.lastrowid)

    @own_write
    def set_commit(self, exp_id: int, sha: str, diff: str) -> None:
        self.db.execute(
            "UPDATE experiments SET commit_sha=?, diff=?, updated=? WHERE id=?", (sha, diff, time.time(), exp_id)
        )

    @own_write
    def rebase_experiment(
        self, exp_id: int, parent_id: int, base_commit: str, edits: dict[str, str], description: str
    ) -> None:
        """Move a candidate that has not been measured onto a newer incumbent (see loop.py)."""
        self.db.execute(
            "UPDATE experiments SET parent_id=?, base_commit=?, edits=?, description=?, commit_sha=NULL,"
            " diff=NULL, updated=? WHERE id=?",
            (parent_id, base_commit, json.dumps(edits), description, time.time(), exp_id),
        )

    @own_write
    def set_status(self, exp_id: int, status: ExpStatus, reason: str | None = None, value: float | None = None) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE experiments SET status=?, reason=COALESCE(?, reason), value=COALESCE(?, value),"
            " updated=?, decided=? WHERE id=?",
            (status.value, reason, value, now, now if status.final else None, exp_id),
        )

    @own_write
    def set_value(self, exp_id: int, value: float) -> None:
        """A new judged value for a decided experiment (the incumbent after a re-measure)."""
        self.db.execute("UPDATE experiments SET value=?, updated=? WHERE id=?", (value, time.time(), exp_id))

    def experiment(self, exp_id: int) -> Experiment | None:
        row = self.db.execute("SELECT * FROM experiments WHERE id=?", (exp_id,)).fetchone()
        return None if row is None else self._experiment(row, self._runs([exp_id]).get(exp_id, []))

    def experiments(self, tag: str) -> list[Experiment]:
        rows = self.db.execute("SELECT * FROM experiments WHERE tag=? ORDER BY id", (tag,)).fetchall()
        runs = self._runs([r["id"] for r in rows])
        return [self._experiment(r, runs.get(r["id"], [])) for r in rows]

    def _experiment(self, row: sqlite3.Row, runs: list[Run]) -> Experiment:
        d = dict(row)
        d["edits"] = json.loads(d["edits"])
        d["params"] = json.loads(d["params"])
        d["status"] = ExpStatus(d["status"])
        return Experiment(**d, runs=[r for r in runs if not r.screen], screens=[r for r in runs if r.screen])

    def _runs(self, exp_ids: list[int]) -> dict[int, list[Run]]:
        out: dict[int, list[Run]] = {}
        if not exp_ids:
            return out
        q = "SELECT * FROM runs WHERE experiment_id IN (SELECT value FROM json_each(?)) ORDER BY id"
        for row in self.db.execute(q, (json.dumps(exp_ids),)):
            d = dict(row)
            d["summary"] = json.loads(d["summary"]) if d["summary"] else {}
            d["status"] = RunStatus(d["status"])
            d["screen"] = bool(d["screen"])
            out.setdefault(d["experiment_id"], []).append(Run(**d))
        return out

    # --- runs -------------------------------------------------------------------------------
    @own_write
    def start_run(
        self,
        exp_id: int,
        seed: int,
        slot: str | None = None,
        node: str | None = None,
        budget: float | None = None,
        screen: bool = False,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (experiment_id, seed, slot, node, status, started, budget, screen)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (exp_id, seed, slot, node, RunStatus.RUNNING.value, time.time(), budget, int(screen)),
        )
        # A decided experiment (the incumbent being re-measured) keeps its status.
        self.db.execute(
            "UPDATE experiments SET status=?, updated=? WHERE id=? AND status IN (?, ?)",
            (ExpStatus.RUNNING.value, time.time(), exp_id, ExpStatus.PROPOSED.value, ExpStatus.RUNNING.value),
        )
        return int(cur.lastrowid)

    @own_write
    def finish_run(self, run_id: int, res: RunResult) -> None:
        cols = res.record()
        cols.update(status=res.status.value, summary=json.dumps(cols["summary"], default=str), ended=time.time())
        self.db.execute(
            f"UPDATE runs SET {', '.join(f'{name}=?' for name in cols)} WHERE id=?", (*cols.values(), run_id)
        )

    @own_write
    def set_rescored(self, run_id: int, value: float, summary: dict | None = None, judged: bool = True) -> None:
        """The protected re-score agreed with the run (it may now count towards a keep); what
        it found besides (`summary`, e.g. `rescored`) is merged into the run's summary. The
        run's value becomes the re-scored one: agreeing within `rescore_tolerance` must not let
        a candidate shade its own report by just under the tolerance and win on that. Not for
        the baseline's check (`judged=False`): nothing waits for it, and a verdict must not
        depend on whether it had ended."""
        self.db.execute(
            "UPDATE runs SET rescored=?, value=CASE WHEN ? THEN ? ELSE value END, "
            "summary=json_patch(COALESCE(summary, '{}'), ?) WHERE id=?",
            (value, judged, value, json.dumps(summary or {}, default=str), run_id),
        )

    def set_mismatch(self, tag: str, run_id: int, error: str) -> None:
        """The protected re-score disagreed or failed: the run becomes `mismatch`, with the
        `rescore-mismatch` event in the same transaction (a kill between them loses neither)."""
        self._rerule(tag, run_id, RunStatus.MISMATCH, error, EventKind.RESCORE_MISMATCH)

    def set_lost(self, tag: str, run_id: int, error: str) -> None:
        """An ended run that can no longer be re-scored (its run directory went with a Ray
        node, or with the controller that knew where it was): it becomes `interrupted`, so it
        counts for nothing and is run again, with the `requeued` event in the same transaction."""
        self._rerule(tag, run_id, RunStatus.INTERRUPTED, error, EventKind.REQUEUED)

    @own_write
    def _rerule(self, tag: str, run_id: int, status: RunStatus, error: str, kind: EventKind) -> None:
        """An ended run's status changed after the fact, and the event saying why, atomically."""
        self.db.execute("UPDATE runs SET status=?, error=? WHERE id=?", (status.value, error, run_id))
        exp_id = self.db.execute("SELECT experiment_id FROM runs WHERE id=?", (run_id,)).fetchone()[0]
        self.db.execute(
            "INSERT INTO events (tag, time, kind, message) VALUES (?,?,?,?)",
            (tag, time.time(), kind, f"#{exp_id} run {run_id}: {error}"),
        )

    @own_write
    def set_run_node(self, run_id: int, node: str) -> None:
        """Where a run really executed, once the executor knows (Ray places tasks itself)."""
        self.db.execute("UPDATE runs SET node=? WHERE id=?", (node, run_id))

    # --- events and recovery ------------------------------------------------------------------
    def event(self, tag: str | None, kind: str, message: str) -> None:
        self.db.execute(
            "INSERT INTO events (tag, time, kind, message) VALUES (?,?,?,?)", (tag, time.time(), kind, message)
        )

    def events(self, tag: str, kind: str | None = None) -> list[dict]:
        q = "SELECT * FROM events WHERE tag=?" + (" AND kind=?" if kind else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(q, (tag, kind) if kind else (tag,))]

    def notes(self, tag: str) -> list[dict]:
        """`overnight note` texts for this tag, and those given before any run (tag NULL)."""
        q = "SELECT * FROM events WHERE kind='note' AND (tag=? OR tag IS NULL) ORDER BY id"
        return [dict(r) for r in self.db.execute(q, (tag,))]

    @own_write
    def recover(self, tag: str) -> int:
        """After a controller died: runs still `running` become `interrupted` and their
        experiments go back to `proposed`, to be run again. Returns how many were recovered."""
        n = self.db.execute(
            "UPDATE runs SET status='interrupted', ended=?, error='controller stopped during the run'"
            " WHERE status='running' AND experiment_id IN (SELECT id FROM experiments WHERE tag=?)",
            (time.time(), tag),
        ).rowcount
        self.db.execute(
            "UPDATE experiments SET status=?, updated=? WHERE tag=? AND status=?",
            (ExpStatus.PROPOSED.value, time.time(), tag, ExpStatus.RUNNING.value),
        )
        return n

    # --- export -----------------------------------------------------------------------------
    def write_results_tsv(self, tag: str, path: Path) -> None:
        """autoresearch's results.tsv of the tag (results_tsv.py), written atomically."""
        write_results_tsv(self.experiments(tag), path)
