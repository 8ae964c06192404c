#!/usr/bin/env bash
# Creates .venv with nbexplain (editable) and its test tools, and installs the widget's
# build tools (the built bundle is committed; tests check it matches js/src).
# Safe to re-run: it only reinstalls when pyproject.toml or js/package-lock.json changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.nbexplain-installed
want=$(cat pyproject.toml js/package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,examples]"
  if command -v npm >/dev/null 2>&1 && [ -f js/package.json ]; then
    (cd js && npm ci --silent --no-audit --no-fund)
  fi
  echo "$want" > "$stamp"
fi
