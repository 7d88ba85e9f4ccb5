"""The nanogpt task's held-out score, run by the harness in a fresh process (`python -m overnight.heldout`).

    python -m overnight.heldout build OUT   # cwd: the task's protected files (prepare.py)
    python -m overnight.heldout score       # cwd: a run's worktree; held-out tokens on stdin

A task's validation tokens are read by its protected evaluation inside the training process, so
a candidate can read them too and fit them: its val_bpb then improves while the model does not.
The held-out slice is a third split of the documents (prepare.py's `split_of`: in neither
train.bin nor val.bin, never seen by the tokenizer) that only this module tokenizes. `build`
writes the tokens to OUT, a path the harness chooses (`heldout_store.py`) and no file or
environment variable of a training run names; `score` reads them from its stdin (an anonymous
memory file, so the stored file is not opened while runs are in flight) and scores the weights
the run's protected report() saved, rebuilt as `prepare.py --rescore` does.

Training never imports this module. What it does not protect against: the held-out documents'
text is wherever the data source is (the embedded corpus is the Python standard library), so a
candidate that recomputes the split from prepare.py and reads the source can train on them;
and the candidate's model code (class bodies, forward) runs in the `score` process and sees the
held-out tokens there (the bwrap sandbox, when on, leaves it nothing writable but a private
/tmp; unshare, nothing in the repository).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _prepare():
    """The task's protected prepare.py from the current directory (its hash was checked)."""
    sys.path.insert(0, os.getcwd())
    import prepare  # the task's module, not ours

    return prepare


def build(out: Path) -> int:
    """Tokenize the held-out documents (BOS before each, like the other splits) into `out`."""
    import numpy as np

    prep = _prepare()
    folder = prep.prepare()  # the tokenizer is trained on the train split only
    tok = prep.Tokenizer(folder)
    bos = prep.VOCAB_SIZE - 1
    want = prep.EVAL_TOKENS + 1
    arrays, total, docs = [], 0, 0
    for name, text in prep._documents(prep.DATA):
        if prep.split_of(name) != "heldout":
            continue
        ids = [bos] + tok.encode(text)
        arrays.append(np.array(ids, dtype=np.uint16))
        total, docs = total + len(ids), docs + 1
        if total >= want:
            break
    if total < 2 * prep.MAX_SEQ_LEN:
        raise SystemExit(f"error: only {total} held-out tokens — use a larger data set or raise HELDOUT_PERMILLE")
    tokens = np.concatenate(arrays)[:want]
    tmp = Path(f"{out}.tmp{os.getpid()}")
    tokens.tofile(tmp)
    os.replace(tmp, out)
    print(f"held-out slice: {len(tokens):,} tokens from {docs} documents in neither split")
    return 0


def score() -> int:
    """heldout_bpb of the run's saved weights on the held-out tokens read from stdin."""
    import numpy as np

    data = sys.stdin.buffer.read()
    tokens = np.frombuffer(data, dtype=np.uint16)
    if len(tokens) < 2:
        raise SystemExit("error: no held-out tokens on stdin")
    prep = _prepare()
    bpb = prep.score_saved_model(Path(os.environ["OVERNIGHT_RESCORE"]).parent, tokens)
    with open(os.environ["OVERNIGHT_RESULT"], "w") as f:
        json.dump({"heldout_val_bpb": bpb}, f)  # heldout_<metric>: the harness reads this key
    print(f"held-out bpb: {bpb:.6f} ({len(tokens):,} tokens)")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        return build(Path(argv[1]))
    if argv == ["score"]:
        return score()
    print("usage: python -m overnight.heldout build OUT | score", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
