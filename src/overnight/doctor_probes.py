"""`overnight doctor`'s slower probes: the C++ compiler, torch and its devices, the precision the
task will train in, Ray, and the LLM endpoint.

Kept apart from doctor.py, whose cheap checks `overnight run` asks before each night: the
controller process never loads this module (doctor.checks imports it when it reaches the probes),
and the probes that may take seconds (torch, the task's own prepare.py, Ray, the network) stay
out of the way of `fatal_problems`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from overnight.doctor_check import FAIL, OK, WARN, Check, first_line
from overnight.errors import OvernightError
from overnight.proposers.options import ProposerOptions
from overnight.run import credentials
from overnight.task import TaskSpec

PRECISIONS = ("auto", "bf16", "fp32")  # OVERNIGHT_PRECISION's values (the built-in task's prepare.py)
PROBE_TIMEOUT = 120.0  # seconds for the task's own precision answer (imports torch: slow when cold)
RAY_TIMEOUT = 30.0  # seconds for `import ray` and joining a cluster: an unreachable address retries long
LLM_TIMEOUT = 5.0  # seconds for the endpoint's first answer


def _last_error(p: subprocess.CompletedProcess) -> str:
    return (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]


def compiler_check() -> Check:
    # Inductor builds CPU kernels with $CXX, else g++ (clang++ on macOS): no other name is
    # tried, so a c++ or clang++ on PATH helps only once CXX names it.
    default = "clang++" if sys.platform == "darwin" else "g++"
    cxx = os.environ.get("CXX", "").strip()
    exe = shutil.which(cxx or default)
    if exe:
        return Check(
            OK, "c++ compiler", f"{first_line([exe, '--version']) or exe} ({exe}{', from CXX' if cxx else ''})"
        )
    others = [c for c in ("g++", "c++", "clang++") if shutil.which(c)]
    what = f"CXX={cxx} not found" if cxx else f"no {default} on PATH"
    fix = f"export CXX={others[0]}" if others else f"install {default} (apt install g++)"
    return Check(WARN, "c++ compiler", f"{what}: torch.compile falls back to eager on CPU (~1.4x slower)", fix)


def torch_check():
    try:
        import torch
    except Exception as exc:  # a broken install raises more than ImportError
        return Check(
            WARN,
            "torch",
            f"not importable ({exc})",
            "pip install torch (a custom task that does not use torch needs nothing)",
        ), None
    build = (
        f"CUDA {torch.version.cuda}"
        if torch.version.cuda
        else f"ROCm {torch.version.hip}"
        if getattr(torch.version, "hip", None)
        else "CPU build"
    )
    devices = (
        [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    devices += ["mps"] if _device(torch) == "mps" else []
    return Check(OK, "torch", f"{torch.__version__} ({build}); devices: {', '.join(devices + ['cpu'])}"), torch


def _device(torch) -> str:
    """The device the built-in task trains on: the first GPU, else Apple's, else the CPU."""
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    mps = torch is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return "mps" if mps else "cpu"


def precision_check(root: Path, task: TaskSpec | None, torch) -> Check:
    forced = os.environ.get("OVERNIGHT_PRECISION", "auto").strip().lower() or "auto"
    device = _device(torch)
    prepare = root / "prepare.py"
    if task is not None and prepare.is_file() and "def bf16_is_fast" in prepare.read_text(errors="replace"):
        return _ask_task(task, device, forced)  # the task decides: report its own answer
    # No rule of the task's own: what the hardware offers (the built-in task's rule).
    if forced not in PRECISIONS:
        return Check(
            WARN, "precision", f"OVERNIGHT_PRECISION={forced!r} is not auto, bf16 or fp32", "unset it or pick one"
        )
    if forced != "auto":
        return Check(OK, "precision", f"{forced}, forced by OVERNIGHT_PRECISION={forced}")
    if torch is None:
        return Check(WARN, "precision", "unknown: torch is not importable")
    if device == "cuda":
        return Check(
            OK,
            "precision",
            "bf16 (this GPU computes in bf16)" if torch.cuda.is_bf16_supported() else "fp32 (this GPU has no bf16)",
        )
    if device == "cpu":
        has = [getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return Check(
            OK,
            "precision",
            "bf16 (this CPU has hardware bf16: AVX-512 BF16 or AMX)"
            if any(has)
            else "fp32 (no hardware bf16: bf16 would be emulated, ~12x slower; the built-in task trains in fp32)",
        )
    return Check(OK, "precision", f"fp32 ({device})")


def _ask_task(task: TaskSpec, device: str, forced: str) -> Check:
    # In a fresh process in the task's folder, as a run would: the Python the task's command
    # names (else this one) and a run's environment (no credentials, the task's env).
    word = (shlex.split(task.command) or [""])[0]
    python = (shutil.which(word) if Path(word).name.startswith("python") else None) or sys.executable
    code = (
        "import json, sys, prepare; r = prepare.bf16_is_fast(sys.argv[1]); r = r if isinstance(r, tuple) "
        "else (r, ''); print(json.dumps([bool(r[0]), str(r[1])]))"
    )
    asked = f"the task's prepare.bf16_is_fast({device!r})"
    try:
        p = subprocess.run(
            [python, "-c", code, device],
            cwd=task.root,
            capture_output=True,
            text=True,
            env={**credentials.scrub(pass_env=task.pass_env), **task.env},
            timeout=PROBE_TIMEOUT,
        )
        bf16, why = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else (None, "")
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return Check(
            FAIL, "precision", f"{asked} gave no answer with {python} ({exc})", "run it by hand in the task's folder"
        )
    if bf16 is None:
        last = _last_error(p)
        fix = (
            "put the Python with the task's packages first on PATH (activate its venv)"
            if "No module named" in last
            else "fix what it says"
        )
        return Check(
            FAIL, "precision", f"{asked} failed with {python}: {last}", f"{fix}: every run would fail the same way"
        )
    note = f"; OVERNIGHT_PRECISION={forced}" if forced != "auto" and "OVERNIGHT_PRECISION" not in why else ""
    return Check(
        OK, "precision", f"{'bf16' if bf16 else 'fp32'} on {device} ({asked}: {why or 'no reason given'}{note})"
    )


def ray_check(address: str | None) -> Check:
    # In a child process: importing Ray is slow, and joining an unreachable address retries
    # for minutes; the timeout bounds both. Auth tokens pass in the environment, never printed.
    code = "import sys, ray; print('@@', ray.__version__, flush=True)"
    if address:
        code += (
            "; ray.init(address=sys.argv[1], include_dashboard=False, logging_level=40); "
            "r = ray.cluster_resources(); print('@@', int(r.get('CPU', 0)), int(r.get('GPU', 0)))"
        )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code, address or ""], capture_output=True, text=True, timeout=RAY_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return Check(
            FAIL,
            "ray",
            f"no answer from {address} within {RAY_TIMEOUT:g} s",
            "check the address (ray status on the head node) and the network",
        )
    # '@@' lines, apart from what Ray's workers print: the version, then the cluster's CPUs and GPUs
    out = [w for line in p.stdout.splitlines() if line.startswith("@@ ") for w in line.split()[1:]]
    if p.returncode != 0:
        what, fix = (
            (f"ray {out[0]} cannot join {address}", "see docs/scaling.md (address, token authentication)")
            if out
            else ("cannot import ray", "pip install 'overnight[ray]'")
        )
        return Check(FAIL, "ray", f"{what} ({_last_error(p)})", fix)
    return Check(
        OK,
        "ray",
        f"ray {out[0]}; {address} answers: {out[1]} CPUs, {out[2]} GPUs"
        if address
        else f"ray {out[0]} imports (the night starts a local instance)",
    )


def llm_check(opts: ProposerOptions) -> Check:
    from overnight.proposers.llm_client import api_key

    try:
        opts.check("optuna")  # the URL's scheme and the provider name
    except OvernightError as exc:
        return Check(FAIL, "llm endpoint", str(exc))
    provider = opts.resolved_provider
    base = opts.base_url.rstrip("/")
    if provider == "anthropic" and not base.endswith("/v1"):
        base += "/v1"  # the Anthropic SDK adds /v1 itself; OpenAI-compatible URLs carry it
    url = f"{base}/models"
    if importlib.util.find_spec(provider) is None:  # the SDK is named after its protocol
        return Check(FAIL, "llm endpoint", f"the {provider} SDK is not installed", "pip install 'overnight[llm]'")
    try:  # no key is sent: any HTTP answer, 401 included, shows the server is there
        with urllib.request.urlopen(url, timeout=LLM_TIMEOUT) as r:
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, no such host
        return Check(
            FAIL,
            "llm endpoint",
            f"no answer from {url} ({getattr(exc, 'reason', exc)})",
            "start the server, or check --base-url",
        )
    try:
        api_key(provider, opts.base_url)
    except OvernightError as exc:  # its message names the variable, never a value
        return Check(FAIL, "llm endpoint", f"{url} answered HTTP {status}, but {exc}")
    return Check(OK, "llm endpoint", f"{url} answered HTTP {status} ({provider} protocol)")
