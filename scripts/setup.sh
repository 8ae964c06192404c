#!/usr/bin/env bash
# Creates .venv with nbexplain (editable) and the extras asked for (default: the test tools and the
# examples), and, for the tests, the widget's build tools (the built bundle is committed; tests
# check it matches js/src). Safe to re-run: it only reinstalls when pyproject.toml,
# js/package-lock.json or the extras changed.
#   bash scripts/setup.sh               # everything the tests need
#   bash scripts/setup.sh examples      # only what the demo needs
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=${1:-test,examples}
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv 2>/dev/null || {
    echo "nbexplain needs Python 3.10+ with venv: sudo apt-get install -y python3-venv (or set PYTHON=)" >&2
    exit 1
  }
fi
stamp=.venv/.nbexplain-installed
want=$( (cat pyproject.toml js/package-lock.json 2>/dev/null; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
  if [[ ",$EXTRAS," == *",test,"* ]] && command -v npm >/dev/null 2>&1 && [ -f js/package.json ]; then
    (cd js && npm ci --silent --no-audit --no-fund)
  fi
  echo "$want" > "$stamp"
fi
