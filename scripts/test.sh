#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, unit tier and the
# cluster tier against a real kube-apiserver + etcd. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh   # python3-venv and Go, when missing
scripts/setup.sh test
# Builds on a cache miss only (minutes), else returns at once.
BIGFLEET_CONTROL_PLANE_BIN=$(scripts/build-control-plane.sh)
export BIGFLEET_CONTROL_PLANE_BIN
# Run again, it must take the cached path and name the same folder: a second run that
# failed or rebuilt would mean the cache or the success path is broken.
again=$(scripts/build-control-plane.sh)
[ "$again" = "$BIGFLEET_CONTROL_PLANE_BIN" ] || {
  echo "build-control-plane.sh named $again on its second run, $BIGFLEET_CONTROL_PLANE_BIN first" >&2
  exit 1
}
echo "control plane: $BIGFLEET_CONTROL_PLANE_BIN" >&2

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The engine's tests, again on its Python source: the reference the compiled engine is
# held to (the same golden traces, the same properties), and the tests that patch it.
BIGFLEET_ENGINE=python .venv/bin/pytest -q \
  tests/unit/engine tests/unit/golden tests/unit/test_sim.py tests/unit/test_sim_closedloop.py
# Everything on the compiled engine, which setup.sh built (ADR 0023): a build that did
# not compile fails here rather than quietly testing the Python engine twice.
BIGFLEET_ENGINE=${BIGFLEET_ENGINE:-compiled} exec .venv/bin/pytest "$@"
