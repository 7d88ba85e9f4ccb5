"""The nanogpt task on the machine it finds: precision by hardware, every batch knob pair valid, setup.

Real runs of the shrunken task (overnight.testing.nanogpt; fixtures in conftest.py) in
subprocesses; the precision decision is also checked in-process with the CPU's capability
monkeypatched, so both branches are tested on any machine.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from overnight import knobs
from overnight.tasks import write_task
from overnight.testing.nanogpt import TINY_PREPARE, run_train, shrink

# The statements of train.py that derive the micro-batch and accumulation from the knobs.
DERIVED = ("rows_per_step", "largest", "device_batch_size", "grad_accum_steps", "tokens_per_step")


@pytest.mark.parametrize(
    "avx512_bf16,amx,probe,expected",
    [
        (False, False, (1e-3, 9e-3), False),  # emulated bf16: fp32, whatever a probe would say
        (True, False, (3.5e-3, 6.5e-3), False),  # hardware bf16 that is slower (as on this project's CPU)
        (True, False, (4e-3, 1e-3), True),
        (False, True, (4e-3, 1e-3), True),  # AMX
        (True, False, (4e-3, 3.6e-3), False),  # faster by less than the margin: fp32
    ],
)
def test_precision_follows_the_cpu(prep, monkeypatch, tmp_path, avx512_bf16, amx, probe, expected):
    monkeypatch.delenv("OVERNIGHT_PRECISION", raising=False)
    monkeypatch.setattr(prep, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    probes = []
    monkeypatch.setattr(prep, "_matmul_seconds", lambda: probes.append(1) or probe)
    use, why = prep.bf16_is_fast("cpu")
    assert use is expected
    assert ("no hardware bf16" in why) is not (avx512_bf16 or amx)
    # Decided once: the next run (the next candidate) trains in the same precision.
    monkeypatch.setattr(prep, "_matmul_seconds", lambda: probes.append(1) or probe[::-1])
    assert prep.bf16_is_fast("cpu") == (use, why)
    assert len(probes) == (1 if avx512_bf16 or amx else 0)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # kernels turned down
    assert prep.bf16_is_fast("cpu")[0] is False


def test_precision_forced_by_the_environment(prep, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setenv("OVERNIGHT_PRECISION", "bf16")
    assert prep.bf16_is_fast("cpu") == (True, "forced by OVERNIGHT_PRECISION")
    monkeypatch.setenv("OVERNIGHT_PRECISION", "FP32")
    assert prep.bf16_is_fast("cpu")[0] is False
    monkeypatch.setenv("OVERNIGHT_PRECISION", "half")
    with pytest.raises(SystemExit) as exc:
        prep.bf16_is_fast("cpu")
    assert str(exc.value).startswith("error: OVERNIGHT_PRECISION='half'") and "\n" not in str(exc.value)


def rescore(task: Path, cache: Path, result: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        OVERNIGHT_CACHE=str(cache),
        OVERNIGHT_RESCORE=str(result),
        OVERNIGHT_RESULT=str(result.with_name("rescore.json")),
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, "prepare.py", "--rescore"], cwd=task, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_run_and_its_rescore_use_the_chosen_precision(task, cache, tmp_path, monkeypatch, precision):
    monkeypatch.setenv("OVERNIGHT_PRECISION", precision)
    result = tmp_path / "result.json"
    proc = run_train(task, cache, budget=1, result=result)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"precision: {precision} (forced by OVERNIGHT_PRECISION)" in proc.stdout
    assert json.loads(result.read_text())["precision"] == precision
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["autocast"] == ("bfloat16" if precision == "bf16" else None)
    monkeypatch.setenv("OVERNIGHT_PRECISION", "bf16" if precision == "fp32" else "fp32")  # what the re-score ignores
    again = rescore(task, cache, result)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    got, reported = (
        json.loads((tmp_path / "rescore.json").read_text())["val_bpb"],
        json.loads(result.read_text())["val_bpb"],
    )
    # fp32 both times: the same number up to summation order; bf16: within the task's tolerance.
    assert got == pytest.approx(reported, rel=1e-5 if precision == "fp32" else 2e-3)


def test_the_run_says_what_this_machine_chose(task, cache, tmp_path, monkeypatch):
    monkeypatch.delenv("OVERNIGHT_PRECISION", raising=False)
    proc = run_train(task, cache, budget=0.5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    hardware = "AVX512" in torch.backends.cpu.get_cpu_capability() and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("precision: "))
    assert ("measured once" in line) if hardware else line.startswith("precision: fp32 (this CPU has no hardware")
    # An AVX2-only CPU, as far as torch's kernels go: the run trains in fp32 on its own.
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    proc = run_train(task, cache, budget=0.5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "precision: fp32 (this CPU has no hardware bf16" in proc.stdout


def derivation(source: str):
    """train.py's batch arithmetic (only those statements), compiled once."""
    tree = ast.parse(source)
    nodes = [
        n
        for n in tree.body
        if [t.id for t in getattr(n, "targets", []) if isinstance(t, ast.Name)][:1] and n.targets[0].id in DERIVED
    ]
    return compile(ast.Module(nodes, type_ignores=[]), "train.py", "exec")


def test_every_batch_knob_pair_of_the_cpu_preset_is_valid(tmp_path):
    write_task("nanogpt", tmp_path, "cpu")
    source = (tmp_path / "train.py").read_text()
    assert all(f"\n{name} = " in source for name in DERIVED)
    import tomllib

    space = {
        k.name: k
        for k in knobs.discover({"train.py": source}, tomllib.loads((tmp_path / "overnight.toml").read_text())["knobs"])
    }
    total, micro = space["TOTAL_BATCH_SIZE"], space["DEVICE_BATCH_SIZE"]
    assert (total.kind, micro.kind) == ("pow2", "int")
    code = derivation(source)
    for seq_len in (256, 200, 2048):  # the preset's, an odd one, one longer than a small step
        for t in [2**e for e in range(int(total.low), int(total.high) + 1)] + [1000, 3 * seq_len]:
            for d in range(int(micro.low), int(micro.high) + 1):
                ns = {"MAX_SEQ_LEN": seq_len, "TOTAL_BATCH_SIZE": t, "DEVICE_BATCH_SIZE": d}
                exec(code, ns)
                assert 1 <= ns["device_batch_size"] <= d
                assert ns["grad_accum_steps"] * ns["device_batch_size"] * seq_len == ns["tokens_per_step"]
                assert abs(ns["tokens_per_step"] - t) <= seq_len / 2 or ns["tokens_per_step"] == seq_len


def test_a_batch_pair_that_does_not_divide_trains(task, cache, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    for name in ("prepare.py", "overnight.toml", "train.py"):
        (odd / name).write_text((task / name).read_text())
    shrink(odd, train=dict(TOTAL_BATCH_SIZE=512, DEVICE_BATCH_SIZE=5))  # 8 sequences of 64 a step
    proc = run_train(odd, cache, budget=0.5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "512 tokens/step, 2 micro-batches of 4" in proc.stdout


def test_setup_builds_the_cache_and_runs_the_warm_up_steps(task, tmp_path):
    fresh = tmp_path / "cache"
    env = dict(os.environ, OVERNIGHT_CACHE=str(fresh), OMP_NUM_THREADS="1", OVERNIGHT_RESULT=str(tmp_path / "r.json"))
    proc = subprocess.run(
        [sys.executable, "prepare.py", "--setup"], cwd=task, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "building the data cache" in out and "setup done in" in out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert steps and "step 00000" in steps[0]
    assert f"num_steps:          {TINY_PREPARE['EXCLUDED_STEPS'] + 1}" in out  # the untimed steps, then one
    assert any((fresh).glob("*/meta.json"))
    assert not (tmp_path / "r.json").exists() and not (task / "model.pt").exists()  # no result anywhere
    assert load_setup(task) == "python prepare.py --setup"


def load_setup(task: Path) -> str | None:
    from overnight.task_load import load_task

    return load_task(task).setup
