#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install bigfleet into it, editable, with the
# extras named as arguments (e.g. `scripts/setup.sh test`). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "bigfleet needs Python >= 3.11; $("$python" --version 2>&1) found (set PYTHON=...)" >&2
  exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
extras=$(IFS=,; echo "$*")
# Installing runs the build hook, which generates the wire modules from proto/.
.venv/bin/python -m pip install --quiet --editable ".${extras:+[$extras]}"
