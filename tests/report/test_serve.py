"""`overnight serve` as a subprocess on loopback: the live page, read-only, following a journal
that another process writes."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from overnight.journal import Journal
from overnight.records import ExpStatus, RunResult, RunStatus
from overnight.testing.html_tree import parse
from overnight.testing.pages import Served


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def request(url: str, method: str, path: str = "/", host: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request, its connection closed."""
    conn = http.client.HTTPConnection(url.split("//")[1].rstrip("/"), timeout=10)
    try:
        headers = {"Host": host} if host else {}
        conn.request(method, path, body=b"x" if method in ("POST", "PUT") else None, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def digest(folder) -> str:
    """The journal's data: the database file and its write-ahead log, if it has one with frames.
    (To read a WAL journal SQLite keeps a -shm index beside it and may leave an empty -wal.)"""
    wal = folder / "journal.db-wal"
    frames = wal.read_bytes() if wal.exists() else b""
    return hashlib.sha256((folder / "journal.db").read_bytes() + frames).hexdigest()


@pytest.fixture
def night(page_night, tmp_path):
    root = tmp_path / "toy"
    shutil.copytree(page_night, root, symlinks=True)
    return root


def test_serves_the_live_page_and_writes_nothing(night, cli):
    state = night / ".overnight"
    before = digest(state)
    with Served(night) as s:
        assert s.url.startswith("http://127.0.0.1:")
        code, text = get(s.url)
        dom = parse(text)
        assert code == 200 and dom.find("body").attrs["data-live"] == "1"
        assert len(dom.find("table", id="exp-table").find("tbody").find_all("tr")) == 6
        st = json.loads(get(s.url + "state")[1])
        assert st["tag"] == "t" and st["experiments"] == 6 and st["finished"] == 6
        assert dom.find("main").attrs["data-version"] == str(st["version"])
        served = json.loads(get(s.url + "status.json")[1])
        printed = json.loads(cli("status", night, "--json").output)
        for k in ("metric", "goal", "experiments", "kept", "crashed", "baseline", "best"):
            assert served[k] == printed[k]
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = request(s.url, method)
            assert status == 405 and headers["Allow"] == "GET, HEAD", method
        assert request(s.url, "GET", "/journal.db")[0] == 404
        assert request(s.url, "GET", host="evil.example:80")[0] == 403  # DNS rebinding
        assert request(s.url, "GET", host="localhost")[0] == 200
        status, headers, body = request(s.url, "HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(text.encode())
    assert digest(state) == before


def test_follows_a_journal_another_process_writes(night):
    with Served(night) as s:
        first = json.loads(get(s.url + "state")[1])["version"]
        assert json.loads(get(s.url + "state")[1])["version"] == first  # no change, no new version
        j = Journal(night / ".overnight" / "journal.db")  # the night's controller, as far as serve knows
        eid = j.add_experiment("t", 5, "0" * 40, "written while serving", "optuna", {}, {})
        run = j.start_run(eid, 0)
        j.finish_run(run, RunResult(RunStatus.OK, 1.2, 0, 1.0, 0.5))
        j.set_status(eid, ExpStatus.DISCARDED, "not better", 1.2)
        j.event("t", "drift", f"#{eid}: the baseline moved")
        j.close()
        st = json.loads(get(s.url + "state")[1])
        assert st["version"] > first and st["experiments"] == 7
        dom = parse(get(s.url)[1])
        rows = dom.find("table", id="exp-table").find("tbody").find_all("tr")
        assert rows[-1].attrs["data-id"] == str(eid) and "written while serving" in rows[-1].text
        assert f"#{eid}: the baseline moved" in dom.find("section", id="guards").text


def run_serve(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "overnight", "serve", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_serve_started_before_the_first_night_waits_for_it(tmp_path):
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller
    from overnight.testing.toy import write_toy

    root = write_toy(tmp_path / "toy")
    proc = subprocess.Popen(
        [sys.executable, "-m", "overnight", "serve", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"waiting for a night in {root}: start it with `overnight run"), first
        time.sleep(1.0)
        assert proc.poll() is None and not (root / ".overnight").exists()  # waiting wrote nothing
        Controller(root, RunConfig(tag="t", judge="greedy", experiments=1)).run()
        served = proc.stdout.readline()
        assert "serving night t at http://" in served, served
        url = served[served.index("http://") :].split()[0]
        status, page = get(url)
        assert status == 200 and "baseline" in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_one_line_errors(tmp_path, night):
    proc = subprocess.Popen(
        [sys.executable, "-m", "overnight", "serve", str(night), "--tag", "nope", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:  # a tag not (yet) there: it waits for it, naming the ones there are
        line = proc.stdout.readline()
        assert line.startswith("waiting for night 'nope'") and "(known tags: t)" in line, line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = run_serve(night, "--port", taken.getsockname()[1])
    assert res.returncode == 2 and "pass --port N" in res.stderr and res.stderr.count("\n") == 1


def test_page_shows_a_new_night_when_following_the_latest(night):
    with Served(night) as s:
        j = Journal(night / ".overnight" / "journal.db")
        j.add_tag("later", "0" * 40, {})
        j.add_experiment("later", None, "0" * 40, "baseline", "baseline", {}, {})
        j.close()
        deadline = time.monotonic() + 10
        while json.loads(get(s.url + "state")[1])["tag"] != "later":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "later" in parse(get(s.url)[1]).find("h1").text
