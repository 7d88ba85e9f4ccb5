"""The SQLite journal: experiments and runs, recovery after a dead controller, results.tsv."""

from __future__ import annotations

import sqlite3

import pytest

from overnight.journal import Journal
from overnight.records import ExpStatus, RunResult, RunStatus
from overnight.results_tsv import TSV_HEADER

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / ".overnight" / "journal.db")
    j.add_tag("t", SHA, {"proposer": "optuna"})
    yield j
    j.close()


def add(j, desc="change", parent=1, params=None, edits=None, tag="t"):
    return j.add_experiment(tag, parent, SHA, desc, "test", params or {"LR": 0.1}, edits or {"train.py": "x"})


def test_tags(journal):
    info = journal.tag_info("t")
    assert info["base_commit"] == SHA and info["config"] == {"proposer": "optuna"}
    assert journal.tag_info("nope") is None
    journal.add_tag("u", SHA, {})
    assert journal.tags() == ["t", "u"]
    with pytest.raises(sqlite3.IntegrityError):
        journal.add_tag("t", SHA, {})


def test_experiment_round_trip(journal):
    eid = add(
        journal, desc="LR 0.1 -> 0.2", parent=None, params={"LR": 0.2, "_trial": 3}, edits={"train.py": "LR = 0.2\n"}
    )
    e = journal.experiment(eid)
    assert e.status == ExpStatus.PROPOSED and not e.status.final
    assert (e.description, e.proposer, e.parent_id) == ("LR 0.1 -> 0.2", "test", None)
    assert e.params == {"LR": 0.2, "_trial": 3} and e.edits == {"train.py": "LR = 0.2\n"}
    assert e.commit_sha is None and e.runs == [] and e.last_run is None
    journal.set_commit(eid, SHA, "diff text")
    journal.set_status(eid, ExpStatus.KEPT, "beats", 0.9)
    e = journal.experiment(eid)
    assert (e.commit_sha, e.diff, e.status, e.reason, e.value) == (SHA, "diff text", ExpStatus.KEPT, "beats", 0.9)
    assert e.decided is not None and e.status.final and not e.status.failed
    assert journal.experiment(9999) is None


def test_set_status_keeps_reason_and_value_when_not_given(journal):
    eid = add(journal)
    journal.set_status(eid, ExpStatus.DISCARDED, "worse", 1.2)
    journal.set_status(eid, ExpStatus.DISCARDED)
    e = journal.experiment(eid)
    assert (e.reason, e.value) == ("worse", 1.2)


def test_runs(journal):
    eid = add(journal)
    r1 = journal.start_run(eid, seed=0, slot="0", node="local")
    assert journal.experiment(eid).status == ExpStatus.RUNNING
    journal.finish_run(
        r1,
        RunResult(
            RunStatus.OK,
            value=1.5,
            exit_code=0,
            wall_seconds=2.0,
            training_seconds=1.0,
            peak_memory_mb=2048.0,
            log_path="/l",
            log_tail="tail",
            printed={"val_bpb": 1.5},
        ),
    )
    r2 = journal.start_run(eid, seed=1)
    journal.finish_run(r2, RunResult(RunStatus.CRASH, exit_code=1, peak_memory_mb=4096.0, error="exit code 1"))
    e = journal.experiment(eid)
    assert [r.id for r in e.runs] == [r1, r2]
    first = e.runs[0]
    assert (first.seed, first.slot, first.node, first.status, first.value) == (0, "0", "local", "ok", 1.5)
    assert first.summary == {"printed": {"val_bpb": 1.5}} and first.ended >= first.started
    assert e.ok_values == [1.5]
    assert e.peak_memory_mb == 4096.0
    assert e.last_run.error == "exit code 1"
    # Runs are attached to the right experiments when listing.
    other = add(journal)
    journal.start_run(other, seed=5)
    by_id = {x.id: x for x in journal.experiments("t")}
    assert [r.seed for r in by_id[other].runs] == [5] and len(by_id[eid].runs) == 2


def test_recover(journal):
    done = add(journal)
    journal.finish_run(journal.start_run(done, 0), RunResult(RunStatus.OK, value=1.0))
    journal.set_status(done, ExpStatus.DISCARDED, "worse", 1.0)
    busy = add(journal)
    rid = journal.start_run(busy, 0)
    journal.add_tag("other", SHA, {})
    elsewhere = add(journal, tag="other")
    journal.start_run(elsewhere, 0)

    assert journal.recover("t") == 1
    e = journal.experiment(busy)
    assert e.status == ExpStatus.PROPOSED
    assert e.runs[0].id == rid and e.runs[0].status == "interrupted" and e.runs[0].ended is not None
    assert journal.experiment(done).status == ExpStatus.DISCARDED  # finished ones untouched
    assert journal.experiment(elsewhere).status == ExpStatus.RUNNING  # other tags untouched
    assert journal.recover("t") == 0  # idempotent


def test_survives_reopen_and_is_wal(tmp_path):
    path = tmp_path / "j.db"
    j = Journal(path)
    j.add_tag("t", SHA, {})
    eid = add(j)
    j.start_run(eid, 0)
    # No close(): a killed process never gets to close. Another connection sees every write.
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT status FROM experiments WHERE id=?", (eid,)).fetchone()[0] == "running"
    other.close()
    j2 = Journal(path)
    assert j2.experiment(eid).runs[0].status == "running"
    j.close()
    j2.close()


def test_events(journal):
    journal.event("t", "resume", "1 run")
    journal.event("t", "note", "hello")
    assert [e["message"] for e in journal.events("t")] == ["1 run", "hello"]
    assert [e["kind"] for e in journal.events("t", "resume")] == ["resume"]


def test_results_tsv_format(journal, tmp_path):
    rows = [
        (ExpStatus.KEPT, "baseline", 0.9979, 45060.2, "a" * 40),
        (ExpStatus.DISCARDED, "LR\t0.1 ->\n0.2\r\n  twice", 1.0051, 1024.0, "b" * 40),
        (ExpStatus.CRASHED, "OOM", None, None, "c" * 40),
        (ExpStatus.TIMEOUT, "slow", None, None, "d" * 40),
        (ExpStatus.INVALID, "nan", None, None, "e" * 40),
        (ExpStatus.REJECTED, "touched evaluate.py", None, None, None),
        (ExpStatus.PROPOSED, "not finished yet", None, None, "f" * 40),
    ]
    for status, desc, value, mem, sha in rows:
        eid = add(journal, desc=desc)
        if sha:
            journal.set_commit(eid, sha, "")
        if mem is not None:
            journal.finish_run(journal.start_run(eid, 0), RunResult(RunStatus.OK, value=value, peak_memory_mb=mem))
        if status != ExpStatus.PROPOSED:
            journal.set_status(eid, status, "r", value)
    out = tmp_path / "results.tsv"
    journal.write_results_tsv("t", out)
    text = out.read_text()
    assert text == (
        TSV_HEADER
        + "aaaaaaa\t0.997900\t44.0\tkeep\tbaseline\n"
        + "bbbbbbb\t1.005100\t1.0\tdiscard\tLR 0.1 -> 0.2 twice\n"
        + "ccccccc\t0.000000\t0.0\tcrash\tOOM\n"
        + "ddddddd\t0.000000\t0.0\tcrash\tslow\n"
        + "eeeeeee\t0.000000\t0.0\tcrash\tnan\n"
        + "0000000\t0.000000\t0.0\tcrash\ttouched evaluate.py\n"
    )
    assert TSV_HEADER == "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        assert len(cols) == 5 and len(cols[0]) == 7 and cols[3] in {"keep", "discard", "crash"}
    assert not out.with_suffix(".tmp").exists()  # written atomically via a temp file


def test_failed_experiment_value_hidden_in_tsv(journal, tmp_path):
    eid = add(journal, desc="bad")
    journal.set_commit(eid, SHA, "")
    journal.set_status(eid, ExpStatus.INVALID, "nan", 5.0)
    journal.write_results_tsv("t", tmp_path / "r.tsv")
    assert (tmp_path / "r.tsv").read_text().splitlines()[1].split("\t")[1:4] == ["0.000000", "0.0", "crash"]


def test_status_enum():
    assert {s for s in ExpStatus if s.failed} == {
        ExpStatus.CRASHED,
        ExpStatus.TIMEOUT,
        ExpStatus.INVALID,
        ExpStatus.REJECTED,
        ExpStatus.OOM,
    }
    assert {s for s in ExpStatus if not s.final} == {ExpStatus.PROPOSED, ExpStatus.RUNNING}


def test_a_commit_by_another_connection_during_our_write_is_not_taken_for_ours(tmp_path):
    """Another process (a candidate that found journal.db) commits while one of our writes is
    between its statement and the snapshot of the rows. It must not be remembered as ours: it
    waits until our write is done, and the next look finds it. (CI once missed a candidate's
    rewrite of the journal that way.)"""
    import threading

    from overnight.tamper import own_write

    path = tmp_path / "journal.db"
    landed = threading.Event()

    def other_writer(exp_id):
        con = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        con.execute("UPDATE experiments SET status='kept', value=0.1 WHERE id=?", (exp_id,))
        con.close()
        landed.set()

    class Slow(Journal):
        @own_write
        def set_value_while_another_writes(self, exp_id: int, value: float) -> threading.Thread:
            self.db.execute("UPDATE experiments SET value=? WHERE id=?", (value, exp_id))
            writer = threading.Thread(target=other_writer, args=(exp_id,))
            writer.start()
            landed.wait(0.5)  # the other process commits now, unless it must wait for us
            return writer

    j = Slow(path)
    j.add_tag("t", SHA, {})
    eid = add(j, parent=None)
    j.claim("t")
    writer = j.set_value_while_another_writes(eid, 0.9)
    writer.join(10)
    assert landed.is_set()
    assert j.tampered()
    j.close()
