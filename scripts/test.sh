#!/usr/bin/env bash
# Set up (first run only), then run every test: Python unit tests, the real-browser
# widget test, the JavaScript unit tests and the tutorial notebooks (nbval).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    echo "The browser test needs Debian's chromium: sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi
if [ -f js/package.json ]; then
  (cd js && node --test test/)
fi
.venv/bin/python -m pytest tests
.venv/bin/python -m pytest --nbval-lax notebooks
