#!/bin/sh
# What tests/test_mlflow_ui_browser.py needs (it skips itself without them):
# Debian's chromium (no `playwright install`: the test drives /usr/bin/chromium) and the
# playwright Python package (part of the `test` extra in pyproject.toml).
# Usage: sh tests/browser_setup.sh [PYTHON]   (default: python3)
set -eu
PY="${1:-python3}"
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
"$PY" -m pip install "playwright>=1.45"
chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 \
    && echo "chromium ok" || echo "warning: chromium did not start headless" >&2
