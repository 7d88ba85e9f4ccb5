"""The sandbox (sandbox.py) on its own: real bwrap / unshare, real files, a real socket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from overnight.records import RunRequest, RunStatus
from overnight.run import sandbox
from overnight.run.execute import run_checkout
from overnight.task_load import load_task

PROBE = r"""
import json, os, socket, sys
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = "ok"
    except OSError as exc:
        out[name] = type(exc).__name__
attempt("write_worktree", lambda: open("w.txt", "w").write("x"))
attempt("write_repo", lambda: open(sys.argv[1] + "/new.txt", "w").write("x"))
attempt("write_tmp", lambda: open("/tmp/overnight-sandbox-probe.txt", "w").write("x"))
attempt("read_hidden", lambda: open(sys.argv[2] + "/secret.bin", "rb").read())
attempt("net", lambda: socket.create_connection(("1.1.1.1", 80), timeout=2))
print(json.dumps(out))
"""


@pytest.mark.parametrize("tool", ["bwrap", "unshare"])
def test_the_sandbox_confines_a_run(tmp_path, monkeypatch, tool):
    monkeypatch.setenv("OVERNIGHT_SANDBOX", tool)
    if sandbox.tool() != tool:
        pytest.skip(f"{tool} unavailable here: {sandbox.unavailable()}")
    repo, hidden = tmp_path / "repo", tmp_path / "repo" / ".overnight" / "heldout"
    work = repo / ".overnight" / "worktrees" / "w"
    hidden.mkdir(parents=True)
    work.mkdir(parents=True)
    (hidden / "secret.bin").write_bytes(b"secret")
    (work / "probe.py").write_text(PROBE)
    outside = Path("/tmp/overnight-sandbox-probe.txt")
    outside.unlink(missing_ok=True)
    command = sandbox.wrap(f"{sys.executable} probe.py {repo} {hidden}", repo, [work], [hidden])
    r = subprocess.run(["/bin/sh", "-c", command], cwd=work, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["write_worktree"] == "ok" and got["write_repo"] != "ok" and got["net"] != "ok", got
    assert got["read_hidden"] == "FileNotFoundError", got
    assert f"[overnight] sandbox: {tool}" in r.stderr
    if tool == "bwrap":  # /tmp is private: the write lands in the sandbox's own tmpfs
        assert got["write_tmp"] == "ok" and not outside.exists()
    assert (hidden / "secret.bin").read_bytes() == b"secret"


def test_no_sandbox_is_one_clear_reason(tmp_path, monkeypatch, toy_repo):
    """Neither tool on PATH: sandbox.unavailable() names both and what to do, and a run with
    limits.sandbox = true fails with that reason instead of running unconfined."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("OVERNIGHT_SANDBOX", raising=False)
    why = sandbox.unavailable()
    assert "`bwrap` is not installed" in why and "`unshare` is not installed" in why
    assert "install bubblewrap" in why and "limits.sandbox = false" in why
    spec = toy_repo / "overnight.toml"
    spec.write_text(spec.read_text() + "\n[limits]\nsandbox = true\n")
    task = load_task(toy_repo)
    res = run_checkout(
        task, RunRequest(commit="HEAD", seed=0, run_dir=tmp_path / "run", worktree=toy_repo, protected_hashes={})
    )
    assert res.status == RunStatus.CRASH and "limits.sandbox is on but unavailable here" in res.error
    assert "install bubblewrap" in res.error
