#!/usr/bin/env bash
# Install the system packages the test command needs when they are missing:
# Python's venv module, a C compiler and Python's headers (the install compiles
# the engine's hot modules, ADR 0023) and a Go toolchain (>= 1.24, to build the
# control-plane binaries), and setpriv (control-plane processes die with the test
# run that started them). Uses apt-get where it exists; elsewhere it only checks and explains.
set -euo pipefail

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v cc >/dev/null || missing+=(gcc)
python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing+=(python3-dev)
command -v go >/dev/null || missing+=(golang-go)
command -v setpriv >/dev/null || missing+=(util-linux)  # control-plane processes die with the test run
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" ca-certificates >/dev/null
  else
    echo "missing system packages: ${missing[*]} (install them, then re-run)" >&2
    exit 1
  fi
fi

minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "$minor" -lt 24 ]; then
  echo "Go $(go env GOVERSION) is too old: install Go >= 1.24 (a distribution's may lag)" >&2
  exit 1
fi
