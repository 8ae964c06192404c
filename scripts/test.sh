#!/usr/bin/env bash
# Set up (first run only), then run every test: the JavaScript unit tests, the Python tests (the
# real-browser widget test, the wheel installed into a fresh environment and the documentation
# site built with warnings as errors among them) and the tutorial notebooks (nbval).
set -euo pipefail
cd "$(dirname "$0")/.."
missing() { echo "scripts/test.sh: $1" >&2; exit 1; }
command -v node >/dev/null 2>&1 || missing "Node.js 18+ is needed for the widget's JavaScript tests: sudo apt-get install -y nodejs npm"
command -v npm >/dev/null 2>&1 || missing "npm is needed to install the widget's build tools: sudo apt-get install -y npm"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    missing "the browser tests need Debian's chromium: sudo apt-get install -y chromium"
  fi
fi
bash scripts/setup.sh
(cd js && node --test test/)
.venv/bin/python -m pytest tests
.venv/bin/python -m pytest --nbval-lax notebooks
