"""A repository shaped like karpathy/autoresearch, written for the tests (`overnight init` on
an existing repository): the same file names, the same constants at the top of train.py, the
budget as TIME_BUDGET in prepare.py, the same `---` summary, and its own results.tsv. The code
is a CPU-only stand-in (pure Python, no torch): "training" counts steps until the budget is
spent, and val_bpb is a smooth function of the constants plus what the step count adds, so
runs vary as real ones do (with the fixed seed 42 of the original: OVERNIGHT_SEED is ignored).
Also a generic repository: a script with constants that prints its metric in either format.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from overnight import gitops

PREPARE = '''\
"""Fixed: data, tokenizer, evaluation and the time budget. Do not modify."""
import math

MAX_SEQ_LEN = 64        # context length
TIME_BUDGET = {budget}  # training time budget in seconds
EVAL_TOKENS = 4096      # tokens of the validation split scored


def evaluate_bpb(quality, steps):
    """Bits per byte of the validation split (a stand-in: lower for better settings and more steps)."""
    return 1.0 + quality + 0.5 / math.sqrt(1 + steps)
'''

TRAIN = '''\
"""The one file the agent edits: model, optimizer, training loop (a CPU stand-in)."""
import math
import random
import time

from prepare import MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb

# Model architecture
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # sliding window pattern: L=full, S=half context

# Optimization
TOTAL_BATCH_SIZE = 2**12 # tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
UNEMBEDDING_LR = 0.004  # learning rate for lm_head (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
SCALAR_LR = 0.5         # learning rate for per-layer scalars (Adam)
WEIGHT_DECAY = 0.2      # cautious weight decay for Muon
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
FINAL_LR_FRAC = 0.0     # final LR as fraction of initial

# Model size
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128 # per-device batch size
H100_BF16_PEAK_FLOPS = 989.5e12  # for MFU only: changes nothing the run trains

random.seed(42)
t_start = time.time()
# How good the settings are: a bowl whose bottom is at MATRIX_LR 0.08, DEPTH 6, WARMDOWN_RATIO 0.6.
quality = (math.log(MATRIX_LR / 0.08)) ** 2 * 0.05 + (DEPTH - 6) ** 2 * 0.004 + (WARMDOWN_RATIO - 0.6) ** 2 * 0.2
step, total_training_time = 0, 0.0
while total_training_time < TIME_BUDGET:
    t0 = time.time()
    x = sum(math.sin(i * 0.001) for i in range(2000 * max(1, DEPTH // 4) * max(1, TOTAL_BATCH_SIZE // 2**12)))
    step += 1
    total_training_time += time.time() - t0
    pct_done = 100 * min(total_training_time / TIME_BUDGET, 1.0)
    print(f"\\rstep {step:05d} ({pct_done:.1f}%) | loss: {3.0 / math.sqrt(step):.6f}", end="", flush=True)
print()
val_bpb = evaluate_bpb(quality, step)
t_end = time.time()
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {total_training_time:.1f}")
print(f"total_seconds:    {t_end - t_start:.1f}")
print(f"peak_vram_mb:     {1000.0 + 10 * DEVICE_BATCH_SIZE:.1f}")
mfu = 100 * 6e6 * TOTAL_BATCH_SIZE * step / max(total_training_time, 1e-9) / H100_BF16_PEAK_FLOPS
print(f"mfu_percent:      {mfu:.2f}")
print(f"total_tokens_M:   {step * TOTAL_BATCH_SIZE / 1e6:.1f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {DEPTH * ASPECT_RATIO * 0.01:.1f}")
print(f"depth:            {DEPTH}")
'''

PROGRAM = """\
# autoresearch

You are an autonomous researcher. Edit only train.py; prepare.py is read-only. Each run trains
for a fixed time budget; the goal is the lowest val_bpb. Simpler is better at equal val_bpb.
"""

RESULTS = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\na1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n"


def write_autoresearch(path: Path, budget: float = 1, uv_lock: bool = False) -> Path:
    """An autoresearch-shaped repository at `path`, committed (results.tsv too, as a user's would be)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "prepare.py").write_text(PREPARE.format(budget=budget))
    (path / "train.py").write_text(TRAIN)
    (path / "program.md").write_text(PROGRAM)
    (path / "results.tsv").write_text(RESULTS)
    (path / "pyproject.toml").write_text('[project]\nname = "autoresearch"\nversion = "0.1.0"\n')
    if uv_lock:
        (path / "uv.lock").write_text("version = 1\n")
    gitops.init_repo(path, "autoresearch")
    return path


def write_generic(path: Path, style: str = "colon") -> Path:
    """A generic training script: constants, OVERNIGHT_BUDGET read, the metric printed as
    `val_loss: x` (style "colon") or `... accuracy=x` (style "equals", higher is better)."""
    if style == "colon":
        report = 'print(f"train_loss: {loss + 0.1:.5f}")\nprint(f"val_loss: {loss:.5f}")'
    else:
        report = 'print(f"epoch 1 train_loss={loss + 0.1:.5f} val_acc={1.0 - loss:.5f}")'
    main = textwrap.dedent(
        """\
        import os
        import random
        import time

        LEARNING_RATE = 0.01  # step size
        WIDTH = 32            # hidden units
        DROPOUT = 0.1         # fraction dropped


        def main():
            budget = float(os.environ.get("OVERNIGHT_BUDGET", "1"))
            random.seed(int(os.environ.get("OVERNIGHT_SEED", "0")))
            time.sleep(min(budget, 0.05))
            loss = 0.3 + abs(LEARNING_RATE - 0.02) * 5 + abs(WIDTH - 48) / 400 + random.gauss(0, 0.002)
            REPORT


        if __name__ == "__main__":
            main()
        """
    ).replace("REPORT", report.replace("\n", "\n    "))
    path.mkdir(parents=True, exist_ok=True)
    (path / "main.py").write_text(main)
    (path / "utils.py").write_text("def helper():\n    return 1\n")
    gitops.init_repo(path, "generic")
    return path
