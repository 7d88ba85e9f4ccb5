#!/usr/bin/env bash
# Usage: bash bench/quickstart.sh > quickstart.log 2>&1   (about 25 minutes; QS_DIR: where it works)
# The README's quick start, command 1 verbatim, as a newcomer on a CPU without hardware bf16
# (torch held to AVX2): fresh clone, fresh venv, empty HOME and OVERNIGHT_CACHE. Then (unless
# QS_CHECKS=0, about 45 minutes more) the morning's checks of its best: `overnight verify` under
# the night's clock, under the wall clock on 10 fresh seeds, and at 4x the budget on 5.
set -uo pipefail
Q=${QS_DIR:-/tmp/overnight-quickstart}
if [ -e "$Q" ]; then echo "$Q exists: remove it or set QS_DIR to a new folder" >&2; exit 1; fi
mkdir -p "$Q/home" "$Q/cache"
git clone -q "$(cd "$(dirname "$0")/.." && pwd)" $Q/repo
cd $Q/repo
echo "commit $(git rev-parse --short HEAD)"; lscpu | grep "Model name"; uptime
python3 -m venv .venv && . .venv/bin/activate
export HOME=$Q/home OVERNIGHT_CACHE=$Q/cache ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
python -m pip install -q --upgrade pip 2>&1 | grep -v WARNING
start=$(date +%s)
echo "START $(date +%T)"
( pip install torch==2.13.0 -e . && overnight init demo --task nanogpt --preset cpu && overnight run demo --hours 0.4 --budget 30 ) 2>&1 \
  | grep --line-buffered -v "^WARNING: Location" | while IFS= read -r line; do echo "$(date +%T) $line"; done
echo "END $(date +%T) elapsed $(( $(date +%s) - start )) s"; uptime
python -c "import torch; print('bf16 cpu', torch.cpu._is_avx512_bf16_supported())"
overnight status demo 2>&1 | tail -30
if [ "${QS_CHECKS:-1}" = 1 ]; then
  for args in "" "--clock wall --runs 10" "--budget 120 --runs 5"; do
    echo "$(date +%T) \$ overnight verify demo $args"
    overnight verify demo $args 2>&1; uptime
  done
  echo "CHECKS END $(date +%T)"
fi
