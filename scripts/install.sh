#!/usr/bin/env bash
# The one install recipe, used by `make setup` and by the Dockerfile.
#   scripts/install.sh            -> a virtual environment in ./.venv with the project installed
#   VENV=none scripts/install.sh  -> install into the current Python (container images)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "$VENV" = none ]; then
    PY=${PYTHON:-python3}
else
    if [ ! -x "$VENV/bin/python" ]; then
        BASE=$(command -v python3.11 || command -v python3)
        "$BASE" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
            || { echo "error: Python 3.11 is required (found $($BASE --version))" >&2; exit 1; }
        "$BASE" -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
fi
# torch first and by exact version: a looser request would pull a multi-GB CUDA build.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e .
