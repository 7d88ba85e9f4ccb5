#!/usr/bin/env bash
# GPU smoke test of the nanogpt task, one prepared script for a lent NVIDIA machine (no network
# needed): writes the task with the gpu preset and the embedded data, runs train.py once with a
# short budget, and prints tokens/s, MFU, val_bpb and peak memory.
#
# Then, unless SHARE=0, bench/slot_share.py: tokens/s of 2 slots sharing the GPU against 1 slot;
# and unless NIGHT=0, a short night of the default configuration on the gpu preset
# (bench/night.py: NIGHT_MINUTES=5 of NIGHT_BUDGET=30 s runs, its best verified on 3 fresh seeds).
#
# Usage (from the repository root): bash bench/gpu_smoke.sh [BUDGET_SECONDS=60]
# Files land under $OUT if set (the device runner brings that folder back), else a temp folder.
set -euo pipefail

BUDGET="${1:-60}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${OUT:-$(mktemp -d)}"
TASK="$WORK/task"
export OVERNIGHT_CACHE="${OVERNIGHT_CACHE:-$WORK/cache}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # overnight without installing it

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'EOF'
import sys, torch
print(f"python {sys.version.split()[0]} | torch {torch.__version__} | cuda {torch.version.cuda}")
if not torch.cuda.is_available():
    sys.exit("error: torch sees no CUDA device — install a CUDA build of torch on this machine")
print(f"device: {torch.cuda.get_device_name()}")
EOF

rm -rf "$TASK" && mkdir -p "$TASK"
python -c "from overnight.tasks import write_task; write_task('nanogpt', '$TASK', 'gpu', None)"

# The first call builds the tokenizer and token cache; time it on its own.
start=$(date +%s)
(cd "$TASK" && python prepare.py > "$WORK/prepare.log" 2>&1) || { cat "$WORK/prepare.log"; exit 1; }
echo "cache build: $(( $(date +%s) - start ))s"

start=$(date +%s)
(cd "$TASK" && OVERNIGHT_BUDGET="$BUDGET" OVERNIGHT_SEED=1 OVERNIGHT_RESULT="$WORK/result.json" \
    python train.py 2>&1 | tee "$WORK/train.log")
echo "wall: $(( $(date +%s) - start ))s for a ${BUDGET}s budget (start-up, compile and evaluation included)"

python - "$WORK/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("=== gpu smoke ===")
for key in ("tokens_per_second", "mfu_percent", "val_bpb", "peak_memory_mb", "num_steps", "num_params_M",
            "training_seconds", "total_seconds"):
    print(f"{key + ':':<20}{r[key]}")
EOF

if [ "${SHARE:-1}" != 0 ]; then
    python "$ROOT/bench/slot_share.py" --preset gpu --budget "$BUDGET"
fi

if [ "${NIGHT:-1}" != 0 ]; then
    python "$ROOT/bench/night.py" --preset gpu --work "$WORK/nights" --out "$WORK/night.jsonl" \
        --configs tpe-noise-screen --minutes "${NIGHT_MINUTES:-5}" --budget "${NIGHT_BUDGET:-30}" --runs 3 --every 2
fi
