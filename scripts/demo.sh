#!/usr/bin/env bash
# Install bigfleet and run its main job on the embedded defaults.
# Until the simulator lands (issue #3) that job is the contract self-check:
# wire descriptors against the contract, CRD schemas against their models.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/bigfleet selfcheck "$@"
