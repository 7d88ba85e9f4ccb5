"""The journal: SQLite (WAL) in `.overnight/journal.db`, written before every state change.

Two levels, as in DESIGN.md: an **experiment** is one candidate (one commit on top of its
parent), a **run** is one seeded execution of it. Every write is its own transaction, so a
controller killed with SIGKILL leaves a journal that says exactly what was in flight; `recover`
turns runs left `running` into `interrupted` and puts their experiments back in the queue.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from overnight.run.runner import RunResult

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
    rescored REAL  -- what the protected re-score computed, once it agreed (NULL: not re-scored)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT, time REAL NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_by_tag ON experiments(tag, id);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment_id, id);
"""


class ExpStatus(str, Enum):
    PROPOSED = "proposed"
    RUNNING = "running"
    KEPT = "kept"
    DISCARDED = "discarded"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    INVALID = "invalid"
    REJECTED = "rejected"  # never run: touched a protected file, or did not apply
    OOM = "oom"  # killed by limits.memory_mb (results.tsv says crash)

    @property
    def final(self) -> bool:
        return self not in (ExpStatus.PROPOSED, ExpStatus.RUNNING)

    @property
    def failed(self) -> bool:
        return self in (ExpStatus.CRASHED, ExpStatus.TIMEOUT, ExpStatus.INVALID, ExpStatus.REJECTED, ExpStatus.OOM)


# autoresearch's results.tsv knows three statuses.
TSV_STATUS = {ExpStatus.KEPT: "keep", ExpStatus.DISCARDED: "discard"}
TSV_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"


@dataclass
class Run:
    id: int
    experiment_id: int
    seed: int
    status: str
    started: float
    ended: float | None = None
    slot: str | None = None
    node: str | None = None
    training_seconds: float | None = None
    wall_seconds: float | None = None
    exit_code: int | None = None
    peak_memory_mb: float | None = None
    value: float | None = None
    summary: dict = field(default_factory=dict)
    log_path: str | None = None
    log_tail: str | None = None
    error: str | None = None
    rescored: float | None = None  # the protected re-score's value, once it agreed with `value`


@dataclass
class Experiment:
    id: int
    tag: str
    parent_id: int | None
    base_commit: str
    commit_sha: str | None
    edits: dict[str, str]
    diff: str | None
    description: str
    proposer: str
    params: dict[str, Any]
    status: ExpStatus
    reason: str | None
    value: float | None
    created: float
    updated: float
    decided: float | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def ok_values(self) -> list[float]:
        return [r.value for r in self.runs if r.status == "ok" and r.value is not None]

    @property
    def peak_memory_mb(self) -> float | None:
        mems = [r.peak_memory_mb for r in self.runs if r.peak_memory_mb is not None]
        return max(mems) if mems else None

    @property
    def last_run(self) -> Run | None:
        return self.runs[-1] if self.runs else None


def _own_write(method):
    """A write to experiments or runs: look for someone else's changes first (tamper watch),
    then write, then remember the rows as they now are."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.tampered():
            self.tamper_seen = True
        out = method(self, *args, **kwargs)
        self._sync()
        return out

    return wrapper


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue our own transactions; each public write is atomic.
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self._migrate()
        self.watched: str | None = None  # the tag whose rows only this connection may change
        self.tamper_seen = False
        self._known = self._version = None

    def _migrate(self) -> None:
        """Columns added since the first release, added to an older journal in place (never
        renamed). runs.rescored: journals written when every run was re-scored inside it kept
        the value in the run's summary only."""
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
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

    # --- tamper watch ---------------------------------------------------------------------
    # The controller is the only writer of its tag's experiments and runs. SQLite's
    # data_version changes only when ANOTHER connection commits, so a change of it plus a
    # change of those rows means someone else (e.g. a candidate that found journal.db) wrote
    # them. Not caught: a change that keeps the columns hashed here, or one made between one
    # of our writes and the snapshot right after it.
    def watch(self, tag: str) -> None:
        self.watched = tag
        self._sync()

    def _digest(self) -> str:
        h = hashlib.sha256()
        for row in self.db.execute(
            "SELECT id, parent_id, status, value, commit_sha, length(edits), decided"
            " FROM experiments WHERE tag=? ORDER BY id",
            (self.watched,),
        ):
            h.update(repr(tuple(row)).encode())
        for row in self.db.execute(
            "SELECT r.id, r.experiment_id, r.status, r.value, r.seed, r.rescored FROM runs r"
            " JOIN experiments e ON e.id = r.experiment_id WHERE e.tag=? ORDER BY r.id",
            (self.watched,),
        ):
            h.update(repr(tuple(row)).encode())
        return h.hexdigest()

    def _sync(self) -> None:
        if self.watched is not None:
            self._version = self.db.execute("PRAGMA data_version").fetchone()[0]
            self._known = self._digest()

    def tampered(self) -> bool:
        """Whether another connection changed the watched tag's experiments or runs since our
        last look (a note from `overnight note` is not a change of those)."""
        if self.watched is None:
            return False
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return False
        self._version = version
        return self._digest() != self._known

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
    @_own_write
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

    @_own_write
    def set_commit(self, exp_id: int, sha: str, diff: str) -> None:
        self.db.execute(
            "UPDATE experiments SET commit_sha=?, diff=?, updated=? WHERE id=?", (sha, diff, time.time(), exp_id)
        )

    @_own_write
    def rebase_experiment(
        self, exp_id: int, parent_id: int, base_commit: str, edits: dict[str, str], description: str
    ) -> None:
        """Move a candidate that has not been measured onto a newer incumbent (see loop.py)."""
        self.db.execute(
            "UPDATE experiments SET parent_id=?, base_commit=?, edits=?, description=?, commit_sha=NULL,"
            " diff=NULL, updated=? WHERE id=?",
            (parent_id, base_commit, json.dumps(edits), description, time.time(), exp_id),
        )

    @_own_write
    def set_status(self, exp_id: int, status: ExpStatus, reason: str | None = None, value: float | None = None) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE experiments SET status=?, reason=COALESCE(?, reason), value=COALESCE(?, value),"
            " updated=?, decided=? WHERE id=?",
            (status.value, reason, value, now, now if status.final else None, exp_id),
        )

    @_own_write
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
        return Experiment(**d, runs=runs)

    def _runs(self, exp_ids: list[int]) -> dict[int, list[Run]]:
        out: dict[int, list[Run]] = {}
        if not exp_ids:
            return out
        q = "SELECT * FROM runs WHERE experiment_id IN (SELECT value FROM json_each(?)) ORDER BY id"
        for row in self.db.execute(q, (json.dumps(exp_ids),)):
            d = dict(row)
            d["summary"] = json.loads(d["summary"]) if d["summary"] else {}
            out.setdefault(d["experiment_id"], []).append(Run(**d))
        return out

    # --- runs -------------------------------------------------------------------------------
    @_own_write
    def start_run(self, exp_id: int, seed: int, slot: str | None = None, node: str | None = None) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = self.db.execute(
                "INSERT INTO runs (experiment_id, seed, slot, node, status, started) VALUES (?,?,?,?,?,?)",
                (exp_id, seed, slot, node, "running", time.time()),
            )
            # A decided experiment (the incumbent being re-measured) keeps its status.
            self.db.execute(
                "UPDATE experiments SET status=?, updated=? WHERE id=? AND status IN (?, ?)",
                (ExpStatus.RUNNING.value, time.time(), exp_id, ExpStatus.PROPOSED.value, ExpStatus.RUNNING.value),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)

    @_own_write
    def finish_run(self, run_id: int, res: RunResult) -> None:
        self.db.execute(
            "UPDATE runs SET status=?, ended=?, training_seconds=?, wall_seconds=?, exit_code=?,"
            " peak_memory_mb=?, value=?, summary=?, log_path=?, log_tail=?, error=?, rescored=? WHERE id=?",
            (
                res.status.value,
                time.time(),
                res.training_seconds,
                res.wall_seconds,
                res.exit_code,
                res.peak_memory_mb,
                res.value,
                json.dumps(_stored_summary(res), default=str),
                res.log_path,
                res.log_tail,
                res.error,
                # re-scored inside the run (RunRequest.rescore): nothing left to re-score before a keep.
                # res.summary holds only what the harness set (runner.RunResult): never the log's block.
                res.summary.get("rescored") if res.status.value == "ok" else None,
                run_id,
            ),
        )

    @_own_write
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
        self._rerule(tag, run_id, "mismatch", error, "rescore-mismatch")

    def set_lost(self, tag: str, run_id: int, error: str) -> None:
        """An ended run that can no longer be re-scored (its run directory went with a Ray
        node, or with the controller that knew where it was): it becomes `interrupted`, so it
        counts for nothing and is run again, with the `requeued` event in the same transaction."""
        self._rerule(tag, run_id, "interrupted", error, "requeued")

    @_own_write
    def _rerule(self, tag: str, run_id: int, status: str, error: str, kind: str) -> None:
        """An ended run's status changed after the fact, and the event saying why, atomically."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("UPDATE runs SET status=?, error=? WHERE id=?", (status, error, run_id))
            exp_id = self.db.execute("SELECT experiment_id FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            self.db.execute(
                "INSERT INTO events (tag, time, kind, message) VALUES (?,?,?,?)",
                (tag, time.time(), kind, f"#{exp_id} run {run_id}: {error}"),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    @_own_write
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

    @_own_write
    def recover(self, tag: str) -> int:
        """After a controller died: runs still `running` become `interrupted` and their
        experiments go back to `proposed`, to be run again. Returns how many were recovered."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            n = self.db.execute(
                "UPDATE runs SET status='interrupted', ended=?, error='controller stopped during the run'"
                " WHERE status='running' AND experiment_id IN (SELECT id FROM experiments WHERE tag=?)",
                (time.time(), tag),
            ).rowcount
            self.db.execute(
                "UPDATE experiments SET status=?, updated=? WHERE tag=? AND status=?",
                (ExpStatus.PROPOSED.value, time.time(), tag, ExpStatus.RUNNING.value),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    # --- export -----------------------------------------------------------------------------
    def write_results_tsv(self, tag: str, path: Path) -> None:
        """autoresearch's results.tsv: one row per finished experiment, written atomically."""
        lines = [TSV_HEADER]
        for e in self.experiments(tag):
            if not e.status.final:
                continue
            status = TSV_STATUS.get(e.status, "crash")
            value = e.value if (e.value is not None and status != "crash") else 0.0
            mem = (e.peak_memory_mb or 0.0) / 1024
            desc = " ".join(e.description.split()).replace("\t", " ")
            lines.append(f"{(e.commit_sha or '0000000')[:7]}\t{value:.6f}\t{mem:.1f}\t{status}\t{desc}\n")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(path)


def _stored_summary(res: RunResult) -> dict:
    """The harness's facts at the top level, the run's own `---` block under "printed": a key the
    candidate prints (say `rescored: 0.5`) can never be read back as the harness's."""
    return (
        {**res.summary, "printed": {k: _json_safe(v) for k, v in res.printed.items()}}
        if res.printed
        else dict(res.summary)
    )


def _json_safe(value):
    """A printed value SQLite's JSON can hold: `nan`, `inf` and integers past 64 bits as text (as
    floats they would make the stored summary invalid JSON, and every later json_patch fail)."""
    if (
        isinstance(value, float)
        and not math.isfinite(value)
        or isinstance(value, int)
        and not -(2**63) <= value < 2**63
    ):
        return str(value)
    return value
