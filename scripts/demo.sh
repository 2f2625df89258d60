#!/usr/bin/env bash
# Install bigfleet and run its main job on the embedded defaults: the contract
# self-check, then the closed-loop soak of the simulator (the real decision
# engine against the fake provider: 3,000 machines, 30 clusters, seeded churn).
# Extra arguments go to `bigfleet sim run soak` (e.g. --seed 7 --cycles 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/bigfleet selfcheck
exec .venv/bin/bigfleet sim run soak "$@"
