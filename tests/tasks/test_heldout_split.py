"""nanogpt's held-out slice: a third split that training never sees, tokenized by harness code.

Real files, real processes: a text corpus cut into known 16 KB documents, a shrunken task, the
cache built by `python -m overnight.heldout build` (which builds the task's cache first)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from overnight import knobs
from overnight.tasks import write_task
from overnight.testing.nanogpt import STDLIB, TINY_PREPARE, TINY_TRAIN

PIECE = 16384  # prepare._text_docs cuts a text file at the first line end after 16 KB
HELD_WORD, TRAIN_WORD = "zqxjvkwheldoutmarker", "pfwtrainmarkerbgyz"


def split_of(i: int) -> str:  # prepare.split_of for the text kind's document names, as shrunk below
    h = zlib.crc32(f"{i:08d}".encode()) % 1000
    return "val" if h < 100 else "heldout" if h < 300 else "train"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(task dir, cache dir, held-out tokens file, document texts) with a marker word in one
    held-out document and another in one training document."""
    base = tmp_path_factory.mktemp("heldout-split")
    prose = " ".join((STDLIB / f"{n}.py").read_text() for n in ("argparse", "inspect", "typing", "textwrap"))
    prose = prose.replace("\n", " ")
    docs = [prose[i * PIECE : (i + 1) * PIECE] for i in range(len(prose) // PIECE)]
    held = next(i for i in range(len(docs)) if split_of(i) == "heldout")
    train = next(i for i in range(len(docs)) if split_of(i) == "train")
    docs[held] = (f" {HELD_WORD}" * PIECE)[:PIECE]
    docs[train] = (f" {TRAIN_WORD}" * PIECE)[:PIECE]
    corpus = base / "corpus.txt"
    corpus.write_text("".join(d + "\n" for d in docs))
    task = base / "task"
    task.mkdir()
    write_task("nanogpt", task, "cpu", f"text:{corpus}")
    for name, values in (
        ("prepare.py", {**TINY_PREPARE, "VOCAB_SIZE": 1024, "HELDOUT_PERMILLE": 200}),
        ("train.py", TINY_TRAIN),
    ):
        (task / name).write_text(knobs.rewrite((task / name).read_text(), values))
    cache = base / "cache"
    out = base / "heldout.bin"
    env = {**os.environ, "OVERNIGHT_CACHE": str(cache)}
    r = subprocess.run(
        [sys.executable, "-m", "overnight.heldout", "build", str(out)],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "held-out slice:" in r.stdout
    return task, cache, out, docs, held


def _tokenizer(task: Path, cache: Path):
    code = (
        "import json, sys, prepare; t = prepare.Tokenizer(); "
        f"print(json.dumps([len(t.encode(' ' + w)) for w in {[HELD_WORD, TRAIN_WORD]!r}]))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=task,
        env={**os.environ, "OVERNIGHT_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_heldout_documents_are_in_neither_token_file(built):
    _, cache, out, _, _ = built
    folder = next(p for p in cache.iterdir() if p.is_dir() and (p / "meta.json").exists())
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["bytes"]["heldout"] >= PIECE and "heldout" not in meta["tokens"]
    heldout = np.fromfile(out, dtype=np.uint16)
    held_ids = set(np.unique(heldout[:2000]).tolist())
    for split in ("train", "val"):
        tokens = np.fromfile(folder / f"{split}.bin", dtype=np.uint16)
        # The marker document's tokens (a repeated word) never appear in a row in train or val.
        marker = heldout[1:9]
        windows = np.lib.stride_tricks.sliding_window_view(tokens, len(marker))
        assert not (windows == marker).all(axis=1).any(), split
    assert held_ids  # the slice is real tokens
    assert not list(folder.glob("*heldout*")), "prepare.py must not write the held-out tokens"


def test_the_tokenizer_never_saw_the_heldout_documents(built):
    """A word repeated through a training document is merged into a token or two; the same kind
    of word through a held-out document is not (the BPE never saw it)."""
    task, cache, *_ = built
    held_len, train_len = _tokenizer(task, cache)
    assert train_len <= 2, train_len
    assert held_len >= 5, held_len


def test_heldout_file_starts_with_the_first_heldout_document(built):
    task, cache, out, docs, _ = built
    heldout = np.fromfile(out, dtype=np.uint16)
    assert heldout[0] == 1023  # BOS (VOCAB_SIZE - 1), as in the other splits
    code = (
        "import sys, prepare; t = prepare.Tokenizer(); import numpy as np; "
        "print(t.decode(np.fromfile(sys.argv[1], dtype=np.uint16)[1:60].tolist()))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=task,
        env={**os.environ, "OVERNIGHT_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    first = next(i for i in range(len(docs)) if split_of(i) == "heldout")
    assert r.returncode == 0 and docs[first].startswith(r.stdout.rstrip("\n")[:40]), (r.stdout[:80], docs[first][:80])
