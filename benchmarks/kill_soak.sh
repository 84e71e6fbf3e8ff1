#!/usr/bin/env bash
# More kill points than CI tries: the kill-and-resume test (tests/test_resume.py) N times, each with its own random
# kill points; every seed is printed, and AGENTR_KILL_SEED=<seed> replays a failing one.
#   bash benchmarks/kill_soak.sh 10
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
for i in $(seq "$runs"); do
  seed=$RANDOM$RANDOM
  echo "run $i/$runs: AGENTR_KILL_SEED=$seed"
  AGENTR_KILL_SEED=$seed .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_resume.py -k killed
done
