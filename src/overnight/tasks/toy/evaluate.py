"""Protected evaluation of the toy task: the true loss, the noise, the result file.

`python evaluate.py --rescore` is the protected re-score (overnight.toml `task.rescore`): in a
fresh process it reads train.py's constants by parsing it (never running it) and computes the
metric again, so a candidate that fakes the result file or patches this module at import is
caught by the harness comparing the two.

Environment: OVERNIGHT_SEED (noise draw), OVERNIGHT_RESULT (where the result JSON goes),
OVERNIGHT_BUDGET (seconds), TOY_NOISE (standard deviation of the Gaussian noise),
TOY_SLEEP (seconds to "train"; "budget" sleeps the whole budget, for scaling benchmarks),
TOY_SHORT_BELOW (a run with a budget under this many seconds is short: it scores
TOY_SHORT_OFFSET, default 0.1, worse, for screening tests) and TOY_SHORT_RANKS ("reverse": a
short run ranks configurations opposite to a full one, a task where screening must not pay).
"""

import ast
import json
import math
import os
import random
import sys
import time

OPTIMUM = dict(LEARNING_RATE=0.002, WEIGHT_DECAY=0.03, WARMUP_RATIO=0.3, WIDTH=128, DEPTH=6,
               ACTIVATION="gelu", USE_NORM=True)
BEST_LOSS = 1.0
ACTIVATION_PENALTY = {"relu": 0.02, "gelu": 0.0, "silu": 0.005}


def _log10_ratio(x, best):
    return math.log10(x / best) if x > 0 else 10.0


def true_loss(c):
    """The noise-free metric; its minimum BEST_LOSS is at OPTIMUM."""
    return (BEST_LOSS
            + 0.08 * _log10_ratio(c["LEARNING_RATE"], OPTIMUM["LEARNING_RATE"]) ** 2
            + 0.05 * _log10_ratio(c["WEIGHT_DECAY"], OPTIMUM["WEIGHT_DECAY"]) ** 2
            + 0.2 * (c["WARMUP_RATIO"] - OPTIMUM["WARMUP_RATIO"]) ** 2
            + 0.02 * math.log2(max(c["WIDTH"], 1) / OPTIMUM["WIDTH"]) ** 2
            + 0.004 * (c["DEPTH"] - OPTIMUM["DEPTH"]) ** 2
            + ACTIVATION_PENALTY.get(c["ACTIVATION"], 0.05)
            + (0.0 if c["USE_NORM"] else 0.01))


def noisy_loss(constants, seed):
    noise = float(os.environ.get("TOY_NOISE", "0.002"))
    # Noise depends on the seed AND the configuration, like a real run: the same config and
    # seed repeat exactly, two configs under one seed do not share their noise.
    draw = random.Random(f"{seed}:{sorted(constants.items())}").gauss(0.0, 1.0)
    loss = true_loss(constants) + noise * draw
    if float(os.environ.get("OVERNIGHT_BUDGET", "1")) < float(os.environ.get("TOY_SHORT_BELOW", "0")):
        loss += float(os.environ.get("TOY_SHORT_OFFSET", "0.1"))
        if os.environ.get("TOY_SHORT_RANKS") == "reverse":
            loss = 2 * (BEST_LOSS + 1) - loss  # better at full budget: worse when short
    return loss


def train_and_evaluate(constants):
    t0 = time.time()
    budget = float(os.environ.get("OVERNIGHT_BUDGET", "1"))
    sleep = os.environ.get("TOY_SLEEP", "0")
    time.sleep(budget if sleep == "budget" else float(sleep))
    seed = int(os.environ.get("OVERNIGHT_SEED", "0"))
    loss = noisy_loss(constants, seed)
    training_seconds = time.time() - t0
    result = {"val_loss": loss, "true_loss": true_loss(constants), "training_seconds": training_seconds}
    path = os.environ.get("OVERNIGHT_RESULT")
    if path:
        with open(path, "w") as f:
            json.dump(result, f)
    print("---")
    print(f"val_loss:         {loss:.6f}")
    print(f"training_seconds: {training_seconds:.2f}")


def constants_of(path="train.py"):
    """The UPPER_CASE constants assigned at the top level of train.py, parsed, not run."""
    out = {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                out[name] = ast.literal_eval(node.value)  # a computed constant: the re-score fails
    return out


if __name__ == "__main__" and sys.argv[1:] == ["--rescore"]:
    constants = constants_of()
    with open(os.environ["OVERNIGHT_RESULT"], "w") as f:
        json.dump({"val_loss": noisy_loss(constants, int(os.environ.get("OVERNIGHT_SEED", "0")))}, f)
