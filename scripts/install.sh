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
# Debian packages, installed when missing and we may (as root, or with sudo): Chromium for
# `layoutray data from-html` and its tests (Playwright drives this binary; no browser is
# downloaded), and nginx, the proxy in front of Serve (deploy/nginx/, tests/serving/test_proxy.py).
MISSING=""
[ -x /usr/bin/chromium ] || MISSING="$MISSING chromium"
[ -x /usr/sbin/nginx ] || MISSING="$MISSING nginx"
if [ -n "$MISSING" ] && command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=$(command -v sudo || true)
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $MISSING
    else
        echo "note: missing Debian packages:$MISSING (chromium for layoutray data from-html, nginx for the serving proxy)" >&2
    fi
fi
# torch first and by exact version: a looser request would pull a multi-GB CUDA build.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e .
