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

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
