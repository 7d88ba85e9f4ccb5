"""A toy "training script": its loss is a known function of the constants below plus noise.

It stands in for a real training run in tests and benchmarks. The evaluation (protected)
lives in evaluate.py; this file is the one a proposer edits.
"""

from evaluate import train_and_evaluate

# ---------------------------------------------------------------------------
# Hyperparameters (edit these)
# ---------------------------------------------------------------------------
LEARNING_RATE = 0.01  # peak learning rate
WEIGHT_DECAY = 0.1  # decoupled weight decay
WARMUP_RATIO = 0.5  # fraction of the budget spent warming up
WIDTH = 64  # model width
DEPTH = 4  # number of layers
ACTIVATION = "relu"  # relu | gelu | silu
USE_NORM = False  # normalise activations

if __name__ == "__main__":
    train_and_evaluate({k: v for k, v in dict(globals()).items() if k.isupper()})
