"""The built-in nanogpt task: written files, tokenizer, metric, dataloader, budget, failures, data kinds.

Runs use a shrunken copy of the task (tiny vocabulary, model and context, no compile) on a small
text corpus the test writes, with the cache in a temporary folder. Nothing is downloaded: the
hf: kind is served by a real HTTP server on loopback.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from overnight import knobs
from overnight.errors import OvernightError
from overnight.run.summary import parse_summary
from overnight.task_load import load_task
from overnight.tasks import write_task
from overnight.testing.nanogpt import TINY_PREPARE, TINY_TRAIN, corpus_text, run_train

# The protected file's figures first (the budget's among them: train.py passes none of those),
# then train.py's own.
SUMMARY_KEYS = [
    "val_bpb",
    "training_seconds",
    "total_seconds",
    "peak_memory_mb",
    "num_steps",
    "total_tokens_M",
    "clock",
    "tokens_per_second",
    "mfu_percent",
    "num_params_M",
    "depth",
    "precision",
]
# ---------------------------------------------------------------------------
# overnight init: the written files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset,depth,vocab,budget", [(None, 3, 2048, 60), ("cpu", 3, 2048, 60), ("gpu", 8, 8192, 300)]
)
def test_write_applies_the_preset(tmp_path, preset, depth, vocab, budget):
    write_task("nanogpt", tmp_path, preset, None)
    assert {"train.py", "prepare.py", "program.md", "overnight.toml"} <= {p.name for p in tmp_path.iterdir()}
    train = knobs.find_constants((tmp_path / "train.py").read_text())
    prepare = knobs.find_constants((tmp_path / "prepare.py").read_text())
    assert train["DEPTH"].value == depth and prepare["VOCAB_SIZE"].value == vocab
    assert prepare["DATA"].value == "embedded"
    toml = (tmp_path / "overnight.toml").read_text()
    assert f"budget   = {budget} " in toml and f"timeout  = {2 * budget + 60} " in toml
    for name in ("train.py", "prepare.py"):
        ast.parse((tmp_path / name).read_text())
    # The hyperparameters are knobs a proposer can find, named as in autoresearch.
    names = {k.name for k in knobs.discover({"train.py": (tmp_path / "train.py").read_text()})}
    assert {"DEPTH", "MATRIX_LR", "EMBEDDING_LR", "ADAM_BETAS[0]", "WARMDOWN_RATIO", "TOTAL_BATCH_SIZE"} <= names


def test_write_records_data_specs_with_absolute_paths(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    (tmp_path / "a").mkdir()
    write_task("nanogpt", tmp_path / "a", None, f"text:{corpus.name}")
    assert knobs.find_constants((tmp_path / "a" / "prepare.py").read_text())["DATA"].value == f"text:{corpus}"
    (tmp_path / "b").mkdir()
    write_task("nanogpt", tmp_path / "b", None, "hf:karpathy/climbmix-400b-shuffle")
    assert (
        knobs.find_constants((tmp_path / "b" / "prepare.py").read_text())["DATA"].value
        == "hf:karpathy/climbmix-400b-shuffle"
    )


@pytest.mark.parametrize(
    "preset,data",
    [
        ("tpu", None),
        (None, "text:/no/such/file.txt"),
        (None, "parquet:/no/such/dir"),
        (None, "hf:not a name"),
        (None, "s3://bucket"),
        (None, "text:"),
    ],
)
def test_bad_preset_or_data_is_one_clear_line(tmp_path, preset, data):
    with pytest.raises(OvernightError) as err:
        write_task("nanogpt", tmp_path, preset, data)
    message = str(err.value)
    assert "\n" not in message and " — " in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------------------
# prepare.py: tokenizer, metric, dataloader
# ---------------------------------------------------------------------------


def test_tokenizer_round_trip(prep):
    tok = prep.Tokenizer()
    assert tok.get_vocab_size() == prep.VOCAB_SIZE
    text = "def f(x):\n    return x ** 2  # ünïcödé, 数字 12345\n\n\tclass A: pass\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    sizes = tok.token_bytes()
    assert sizes[tok.bos_token_id] == 0  # special tokens count no bytes
    assert sum(sizes[i] for i in ids) == len(text.encode())
    assert len(ids) < len(text.encode())  # the merges compress


def test_causality_probe(prep):
    """The re-score's causality probe: 0 for a model that only looks back, large for one that
    peeks at the tokens it predicts."""
    import torch

    class LookBack(torch.nn.Module):  # position t predicts from tokens <= t (a running sum)
        def forward(self, x):
            return torch.nn.functional.one_hot(x.cumsum(1) % 7, 7).float()

    class Peek(torch.nn.Module):  # every position sees the window's last token
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, -1:].expand_as(x) % 7, 7).float()

    tokens = prep._tokens("val")
    assert prep.causality_gap(LookBack(), tokens, 64, 7) == 0.0
    assert prep.causality_gap(Peek(), tokens, 64, 7) > prep.CAUSALITY_TOLERANCE


class Uniform:
    """A model that knows nothing: the same logits for every position."""

    def __init__(self, vocab):
        self.vocab = vocab

    def __call__(self, x, y, reduction="none"):
        import torch

        logits = torch.zeros(*y.shape, self.vocab)
        return torch.nn.functional.cross_entropy(logits.view(-1, self.vocab), y.reshape(-1), reduction="none").view(
            y.shape
        )


def test_bits_per_byte_hand_computed(prep):
    # Vocabulary of 4: tokens 0, 1, 2 stand for 1, 2, 3 bytes; 3 is special (0 bytes).
    tokens = np.array([3, 0, 1, 2, 3, 0, 1, 2, 3, 0], dtype=np.uint16)
    token_bytes = np.array([1, 2, 3, 0])
    # seq_len 4 -> two whole windows, targets 0 1 2 3 0 1 2 3. The six non-special targets each
    # cost ln 4 nats = 2 bits under a uniform model: 12 bits over 2 * (1 + 2 + 3) = 12 bytes.
    bpb = prep.bits_per_byte(Uniform(4), tokens, token_bytes, batch_size=1, seq_len=4, max_tokens=100, device="cpu")
    assert bpb == pytest.approx(1.0)
    # max_tokens cuts whole windows: only the first window (6 bytes, 3 scored targets).
    bpb = prep.bits_per_byte(Uniform(4), tokens, token_bytes, batch_size=2, seq_len=4, max_tokens=5, device="cpu")
    assert bpb == pytest.approx(1.0)
    # A vocabulary of 16 costs 4 bits per token: 3 tokens over 6 bytes is 2 bits per byte.
    bpb = prep.bits_per_byte(Uniform(16), tokens, np.array([1, 2, 3, 0] + [1] * 12), 1, 4, 4, "cpu")
    assert bpb == pytest.approx(3 * 4 / 6)


def test_evaluate_bpb_of_a_uniform_model(prep):
    val = np.fromfile(prep.cache_path() / "val.bin", dtype=np.uint16)
    n = min(prep.EVAL_TOKENS, len(val) - 1) // prep.MAX_SEQ_LEN * prep.MAX_SEQ_LEN
    sizes = prep.Tokenizer().token_bytes()
    targets = val[1 : n + 1]
    expected = (sizes[targets] > 0).sum() * math.log2(prep.VOCAB_SIZE) / sizes[targets].sum()
    assert prep.evaluate_bpb(Uniform(prep.VOCAB_SIZE), batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_dataloader_is_deterministic_for_a_seed(prep):
    def batches(seed, n=3):
        loader = prep.make_dataloader(4, 16, "train", seed=seed)
        return [next(loader) for _ in range(n)]

    a, b, c = batches(7), batches(7), batches(8)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.equal(xb) and ya.equal(yb)
    assert not all(xa.equal(xc) for (xa, _), (xc, _) in zip(a, c))
    x, y = a[0]
    assert x.shape == y.shape == (4, 16) and str(x.dtype) == "torch.int64"
    assert x[:, 1:].equal(y[:, :-1])  # targets are the inputs shifted by one
    assert int(x.max()) < prep.VOCAB_SIZE


# ---------------------------------------------------------------------------
# train.py: a real run, the budget, the summary, the result file, failure
# ---------------------------------------------------------------------------


def test_smoke_run_stops_at_the_budget_and_writes_the_result(task, cache, prep, tmp_path):
    result = tmp_path / "result.json"
    proc = run_train(task, cache, budget=2.5, seed=3, result=result)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = parse_summary(proc.stdout)
    assert summary.found and list(summary.values) == SUMMARY_KEYS
    data = json.loads(result.read_text())
    assert set(SUMMARY_KEYS) <= set(data) and data["seed"] == 3 and data["budget"] == 2.5
    assert len(data["data_hash"]) == 64 and data["data"].startswith("text:")
    assert data["val_bpb"] == pytest.approx(summary.values["val_bpb"], abs=1e-6)
    # The budget counts training steps only, and the run stops at the first step past it.
    step_time = data["training_seconds"] / max(data["num_steps"] - TINY_PREPARE["EXCLUDED_STEPS"], 1)
    assert 2.5 <= data["training_seconds"] < 2.5 + max(5 * step_time, 0.5)
    assert data["total_seconds"] >= data["training_seconds"]
    assert data["num_steps"] > 10 and data["depth"] == TINY_TRAIN["DEPTH"]
    # It learned something: well below a uniform guess over the vocabulary.
    assert 0 < data["val_bpb"] < 0.8 * prep.evaluate_bpb(Uniform(prep.VOCAB_SIZE), batch_size=8)
    # The protected re-score (overnight.toml task.rescore): a fresh process rebuilds the model
    # from train.py's definitions, loads the saved weights and gets the same number.
    rescored = tmp_path / "rescore.json"
    env = dict(
        os.environ,
        OVERNIGHT_CACHE=str(cache),
        OVERNIGHT_RESCORE=str(result),
        OVERNIGHT_RESULT=str(rescored),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, "prepare.py", "--rescore"], cwd=task, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(rescored.read_text())["val_bpb"] == pytest.approx(data["val_bpb"], rel=2e-3)
    assert load_task(task).rescore == "python prepare.py --rescore"


def test_run_by_hand_uses_the_budget_in_overnight_toml(task, cache, tmp_path):
    env = dict(os.environ, OVERNIGHT_CACHE=str(cache))
    for var in ("OVERNIGHT_BUDGET", "OVERNIGHT_SEED", "OVERNIGHT_RESULT"):
        env.pop(var, None)
    code = "import prepare; print(prepare.TIME_BUDGET, prepare.SEED)"
    out = subprocess.run([sys.executable, "-c", code], cwd=task, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["60.0", "42"]


def test_nan_loss_fails_fast(task, cache, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("prepare.py", "overnight.toml"):
        (broken / name).write_text((task / name).read_text())
    source = (task / "train.py").read_text()
    assert "loss = train_model(x, y)" in source
    (broken / "train.py").write_text(
        source.replace("loss = train_model(x, y)", "loss = train_model(x, y) * float('nan')")
    )
    result = tmp_path / "result.json"
    proc = run_train(broken, cache, budget=30, result=result)
    assert proc.returncode != 0
    assert "diverged" in proc.stdout + proc.stderr
    assert not result.exists()


# ---------------------------------------------------------------------------
# Data kinds and the cache
# ---------------------------------------------------------------------------


def check_cache(prep, spec):
    folder = prep.prepare(spec)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["spec"] == spec and len(meta["data_hash"]) == 64
    assert meta["tokens"]["train"] > 1000 and meta["tokens"]["val"] > 2 * prep.MAX_SEQ_LEN
    train = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
    assert len(train) == meta["tokens"]["train"] and int(train.max()) < prep.VOCAB_SIZE
    assert prep.prepare(spec) == folder  # built once
    return meta


def test_text_data(prep, corpus):
    meta = check_cache(prep, f"text:{corpus}")
    assert sum(meta["bytes"].values()) == len(corpus.read_bytes())


def write_shards(folder: Path, n: int = 2) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    docs = [d for d in corpus_text().split("\n\n") if d.strip()]
    for i in range(n):
        pq.write_table(
            pa.table({"id": list(range(len(docs[i::n]))), "text": docs[i::n]}), folder / f"shard_{i:05d}.parquet"
        )


def test_parquet_data(prep, tmp_path):
    write_shards(tmp_path / "shards")
    check_cache(prep, f"parquet:{tmp_path / 'shards'}")


def test_hf_data_from_a_local_server(prep, tmp_path, monkeypatch):
    root = tmp_path / "hub"
    write_shards(root / "data", n=3)
    listing = [{"type": "file", "path": f"data/{p.name}"} for p in sorted((root / "data").iterdir())]
    listing.append({"type": "file", "path": "README.md"})
    requests = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path == "/api/datasets/acme/tiny/tree/main?recursive=true":
                body = json.dumps(listing).encode()
            elif self.path.startswith("/datasets/acme/tiny/resolve/main/data/"):
                body = (root / "data" / self.path.rsplit("/", 1)[1]).read_bytes()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(prep, "HF_SHARDS", 2)
        check_cache(prep, "hf:acme/tiny")
        downloads = [r for r in requests if "/resolve/" in r]
        assert len(downloads) == 2  # HF_SHARDS of the 3 shards
        check_cache(prep, "hf:acme/tiny")
        assert len([r for r in requests if "/resolve/" in r]) == 2  # cached: no second download
        with pytest.raises(SystemExit, match="cannot list hf dataset"):
            prep.prepare("hf:acme/missing")
    finally:
        server.shutdown()
        server.server_close()


def test_embedded_data(prep):
    meta = check_cache(prep, "embedded")
    assert meta["bytes"]["train"] > 5e6 and 0 < meta["bytes"]["val"] < meta["bytes"]["train"] / 10


@pytest.mark.parametrize("spec", ["nope", "text:", "embedded:x", "parquet:/no/such/dir"])
def test_bad_spec_at_run_time_is_one_line(prep, spec):
    with pytest.raises(SystemExit) as err:
        prep.prepare(spec)
    assert str(err.value).startswith("error: ") and "\n" not in str(err.value) and " — " in str(err.value)


def test_two_runs_starting_at_once_build_the_cache_once(task, tmp_path):
    env = dict(os.environ, OVERNIGHT_CACHE=str(tmp_path / "fresh-cache"))
    procs = [
        subprocess.Popen(
            [sys.executable, "prepare.py"], cwd=task, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("building the data cache" in out for out, _ in outs) == 1
    hashes = {json.loads(out[out.index("{") :])["data_hash"] for out, _ in outs}
    assert len(hashes) == 1
    assert [p.name for p in (tmp_path / "fresh-cache").iterdir() if ".tmp" in p.name] == []


@pytest.mark.slow
def test_patched_evaluation_is_caught_by_the_rescore(task, cache, tmp_path, monkeypatch):
    """Issue 7 on the real task: a candidate that patches the protected evaluation at import
    reports a great val_bpb in its own process; the harness's re-score in a fresh process
    (saved weights, train.py's definitions, the loss computed by protected code) disagrees,
    so the run is MISMATCH. The honest baseline passes the same check. ~40 s on 2 cores."""
    import shutil

    from overnight import gitops
    from overnight.records import RunRequest, RunStatus
    from overnight.run.execute import execute
    from overnight.task import file_hash

    root = tmp_path / "repo"
    shutil.copytree(task, root, ignore=shutil.ignore_patterns("__pycache__"))
    gitops.init_repo(root, "task")
    base = gitops.head(root)
    cheat = (
        (root / "train.py")
        .read_text()
        .replace(
            "import torch\n",
            "import torch\nimport prepare\n_real = prepare.bits_per_byte\n"
            "prepare.bits_per_byte = lambda *a, **k: 0.5 * _real(*a, **k)\n",
            1,
        )
    )
    cheat_commit = gitops.make_commit(root, base, {"train.py": cheat}, "cheat")
    monkeypatch.setenv("OVERNIGHT_CACHE", str(cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = load_task(root).with_budget(1.5)
    hashes = {p: file_hash(gitops.read_file(root, base, p)) for p in spec.protected}
    results = {}
    for name, commit in (("honest", base), ("cheat", cheat_commit)):
        req = RunRequest(
            commit=commit, seed=1, run_dir=tmp_path / name, worktree=root / ".overnight" / name, protected_hashes=hashes
        )
        results[name] = execute(spec, req)
    honest, cheated = results["honest"], results["cheat"]
    assert honest.status == RunStatus.OK, (honest.error, honest.log_tail)
    assert honest.summary["rescored"] == pytest.approx(honest.value, rel=2e-3)
    assert cheated.status == RunStatus.MISMATCH, (cheated.status, cheated.error, cheated.log_tail)
    assert "re-scored by protected code" in cheated.error
