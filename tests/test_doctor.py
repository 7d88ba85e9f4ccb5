"""`overnight doctor` and the fatal checks of `overnight run`, through the real CLI: a PATH
without git or compilers, a real HTTP server on loopback, a task's own prepare.py asked in a
child process. Each check fails in one line; warnings alone exit 0."""

from __future__ import annotations

import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from overnight.testing.procs import one_error_line

ORDER = [
    "python",
    "git",
    "task",
    "c++ compiler",
    "torch",
    "precision",
    "disk (journal)",
    "disk (data cache)",
    "inotify",
    "sandbox",
]


@pytest.fixture
def path_with(tmp_path, monkeypatch):
    """path_with(*tools): PATH becomes a folder holding `python` (this interpreter, venv and
    all) and links to the named tools, nothing else; OVERNIGHT_SANDBOX is unset."""

    def make(*tools: str):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / "python").chmod(0o755)
        for tool in tools:
            (bin_dir / tool).symlink_to(shutil.which(tool))
        monkeypatch.setenv("PATH", str(bin_dir))
        monkeypatch.delenv("OVERNIGHT_SANDBOX", raising=False)
        return bin_dir

    return make


def lines(result) -> dict[str, str]:
    """{check name: its line}; asserts every line is `<level> <name>: ...` and no traceback."""
    assert "Traceback" not in result.output, result.output
    found = {}
    for line in result.stdout.splitlines():
        level, _, rest = line.partition(" ")
        assert level in ("ok", "info", "warn", "FAIL"), line
        found[rest.strip().split(":")[0]] = line
    return found


def line(result, name: str) -> str:
    return lines(result)[name]


def with_sandbox(repo):
    spec = repo / "overnight.toml"
    spec.write_text(spec.read_text() + "\n[limits]\nsandbox = true\n")
    return repo


def test_one_line_per_check_in_order(cli, toy_repo):
    result = cli("doctor", toy_repo)
    found = lines(result)
    assert list(found) == ORDER, result.stdout  # no Ray or LLM line unless asked
    assert found["task"].startswith("ok    task: ") and "minimize val_loss" in found["task"]
    assert found["git"].startswith("ok    git: git version")
    assert result.exit_code == 0, result.output  # whatever warns here (no g++, no inotify), git is there


def test_git_missing(cli, toy_repo, path_with):
    path_with()
    result = cli("doctor", toy_repo)
    assert result.exit_code == 1, result.output
    assert line(result, "git").startswith("FAIL  git: not found on PATH — install git")
    assert "git missing" in line(result, "task")  # the spec still loads; commits are not checked


def test_run_stops_before_anything_without_git(cli, toy_repo, path_with):
    path_with()
    one_error_line(
        cli("run", toy_repo, "--experiments", "1"), "git: not found on PATH", "install git", "overnight doctor"
    )
    assert not (toy_repo / ".overnight").exists()  # nothing written, no baseline run


def test_fatal_checks_never_import_torch(toy_repo):
    """The controller never imports torch: `overnight run`'s checks must not either."""
    code = (
        "import sys; from overnight.doctor import fatal_problems; "
        "print(fatal_problems(sys.argv[1]), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(toy_repo)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "False"], out.stderr


@pytest.mark.parametrize("cxx", ["missing-file", None])
def test_no_cxx_compiler_warns(cli, toy_repo, path_with, monkeypatch, tmp_path, cxx):
    path_with("git")
    if cxx:
        monkeypatch.setenv("CXX", str(tmp_path / cxx))
    else:
        monkeypatch.delenv("CXX", raising=False)
    result = cli("doctor", toy_repo)
    text = line(result, "c++ compiler")
    assert text.startswith("warn  c++ compiler: ") and "torch.compile falls back to eager" in text
    assert (f"CXX={tmp_path / cxx} not found" if cxx else "install") in text
    assert result.exit_code == 0, result.output  # warnings alone: the night runs


def test_cxx_names_a_compiler_that_is_not_the_default(cli, toy_repo, path_with, monkeypatch):
    other = next((c for c in ("c++", "clang++") if shutil.which(c)), None)
    if other is None:
        pytest.skip("no c++ or clang++ here")
    path_with("git", other)
    monkeypatch.delenv("CXX", raising=False)
    assert f"export CXX={other}" in line(cli("doctor", toy_repo), "c++ compiler")  # inductor tries g++ only
    monkeypatch.setenv("CXX", other)
    assert line(cli("doctor", toy_repo), "c++ compiler").startswith("ok    c++ compiler: ")


def test_broken_spec_is_one_fail_line(cli, toy_repo):
    (toy_repo / "overnight.toml").write_text("[task\ncommand = 1\n")
    result = cli("doctor", toy_repo)
    assert result.exit_code == 1, result.output
    text = line(result, "task")
    assert text.startswith("FAIL  task: overnight.toml is not valid TOML") and "— fix the syntax" in text
    assert sum(row.startswith("FAIL") for row in result.stdout.splitlines()) == 1


def test_not_a_task_says_overnight_init(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("doctor", empty)
    assert result.exit_code == 1
    assert "not a git repository — `overnight init" in line(result, "task")


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_precision_forced_by_environment(cli, toy_repo, monkeypatch, forced):
    monkeypatch.setenv("OVERNIGHT_PRECISION", forced)
    assert (
        line(cli("doctor", toy_repo), "precision")
        == f"ok    precision: {forced}, forced by OVERNIGHT_PRECISION={forced}"
    )


PREPARE = """\
import os

def bf16_is_fast(device):
    p = os.environ.get("OVERNIGHT_PRECISION", "auto")
    if p not in ("auto", "bf16", "fp32"):
        raise SystemExit(f"error: OVERNIGHT_PRECISION={p!r} — use auto, bf16 or fp32")
    return p == "bf16", f"the task's rule on {device} in pid {os.getpid()}"
"""


def test_precision_is_the_tasks_own_answer(cli, task_repo, monkeypatch):
    repo = task_repo("print('train')\n", files={"prepare.py": PREPARE})
    monkeypatch.setenv("OVERNIGHT_PRECISION", "bf16")
    text = line(cli("doctor", repo), "precision")
    assert text.startswith("ok    precision: bf16 on ") and "the task's rule on " in text
    assert f"in pid {os.getpid()}" not in text  # asked in a child process, as a run would
    assert "OVERNIGHT_PRECISION=bf16" in text  # the task's reason did not say it: doctor does
    monkeypatch.setenv("OVERNIGHT_PRECISION", "fp32")
    assert line(cli("doctor", repo), "precision").startswith("ok    precision: fp32 on ")
    monkeypatch.setenv("OVERNIGHT_PRECISION", "half")
    result = cli("doctor", repo)
    assert result.exit_code == 1
    assert line(result, "precision").startswith("FAIL  precision: the task's prepare.bf16_is_fast(")
    assert "OVERNIGHT_PRECISION='half' — use auto, bf16 or fp32" in line(result, "precision")


class _Models(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):
        _Models.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(401)  # no key sent: a real server may well refuse, and still answers
        self.end_headers()
        self.wfile.write(b'{"error": "no key"}')

    def log_message(self, *args):
        pass


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="needs overnight[llm]")
def test_llm_endpoint_answers(cli, toy_repo, monkeypatch):
    _Models.seen.clear()
    secret = "sk-doctor-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        result = cli("doctor", toy_repo, "--base-url", base, "--model", "m")
    finally:
        server.shutdown()
        server.server_close()
    assert line(result, "llm endpoint") == f"ok    llm endpoint: {base}/models answered HTTP 401 (openai protocol)"
    assert _Models.seen == [("/v1/models", None)]  # the key is never sent
    assert secret not in result.output
    assert result.exit_code == 0, result.output


def test_llm_endpoint_refused(cli, toy_repo):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("doctor", toy_repo, "--base-url", f"http://127.0.0.1:{port}/v1")
    assert result.exit_code == 1
    assert line(result, "llm endpoint").startswith(
        f"FAIL  llm endpoint: no answer from http://127.0.0.1:{port}/v1/models"
    )
    assert "start the server, or check --base-url" in line(result, "llm endpoint")


def test_sandbox_required_but_unavailable(cli, toy_repo, path_with):
    with_sandbox(toy_repo)
    path_with("git")  # neither bwrap nor unshare
    result = cli("doctor", toy_repo)
    assert result.exit_code == 1
    text = line(result, "sandbox")
    assert text.startswith(
        "FAIL  sandbox: limits.sandbox is on, but no sandbox works here (bwrap: `bwrap` is not installed"
    )
    assert "install bubblewrap" in text
    one_error_line(cli("run", toy_repo), "limits.sandbox is on", "set limits.sandbox = false")
    assert not (toy_repo / ".overnight").exists()


def test_no_sandbox_here_is_a_warning_by_default_and_nothing_when_off(cli, toy_repo, path_with):
    path_with("git")
    result = cli("doctor", toy_repo)  # limits.sandbox = "auto": the runs go on, unsandboxed
    assert line(result, "sandbox").startswith("warn  sandbox: none works here, runs are not sandboxed (bwrap:")
    assert "install bubblewrap" in line(result, "sandbox")
    assert result.exit_code == 0, result.output
    spec = toy_repo / "overnight.toml"
    spec.write_text(spec.read_text() + "\n[limits]\nsandbox = false\n")
    result = cli("doctor", toy_repo)
    assert line(result, "sandbox").startswith("info  sandbox: none works here (limits.sandbox is off")
    assert result.exit_code == 0, result.output


def test_disk_floor(cli, toy_repo, monkeypatch):
    monkeypatch.setenv("OVERNIGHT_MIN_FREE_GB", "1e9")  # no disk has that much free
    result = cli("doctor", toy_repo)
    assert result.exit_code == 1
    assert line(result, "disk (journal)").startswith("FAIL  disk (journal): ")
    assert "point OVERNIGHT_CACHE elsewhere" in line(result, "disk (data cache)")
    one_error_line(cli("run", toy_repo), "disk (journal)", "free some space")
    assert not (toy_repo / ".overnight").exists()
    monkeypatch.setenv("OVERNIGHT_MIN_FREE_GB", "lots")
    one_error_line(cli("run", toy_repo), "OVERNIGHT_MIN_FREE_GB='lots' is not a number")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs overnight[ray]")
def test_ray_only_when_asked(cli, toy_repo):
    result = cli("doctor", toy_repo, "--executor", "ray")
    assert line(result, "ray").startswith("ok    ray: ray ") and "imports" in line(result, "ray")
    assert list(lines(result)) == ORDER + ["ray"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs overnight[ray]")
def test_ray_cluster_answers(cli, toy_repo):
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    address = c.address  # None once shut down
    try:
        c.wait_for_nodes()
        result = cli("doctor", toy_repo, "--ray-address", address)
    finally:
        c.shutdown()
    assert line(result, "ray") == f"ok    ray: ray {ray.__version__}; {address} answers: 1 CPUs, 0 GPUs"
    assert result.exit_code == 0, result.output


def test_the_steps_clock_says_whether_it_can_see_others_load(cli, toy_repo, monkeypatch):
    assert "clock" not in lines(cli("doctor", toy_repo))  # the toy's wall clock: nothing to say
    spec = toy_repo / "overnight.toml"
    spec.write_text(spec.read_text().replace("[task]\n", '[task]\nclock = "steps"\n', 1))
    assert line(cli("doctor", toy_repo), "clock").startswith("ok    clock: the steps clock reads run-queue waits")
    import overnight.doctor as doctor

    real = doctor.Path

    class NoSchedstat(type(real())):  # a kernel without schedstats (or not Linux)
        def read_text(self, *a, **kw):
            if str(self).endswith("schedstat"):
                raise FileNotFoundError(str(self))
            return super().read_text(*a, **kw)

    monkeypatch.setattr(doctor, "Path", NoSchedstat)
    warned = line(cli("doctor", toy_repo), "clock")
    assert (
        warned.startswith("warn  clock: the steps clock cannot read run-queue waits")
        and "keep the machine quiet" in warned
    )
