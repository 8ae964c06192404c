#!/usr/bin/env bash
# Set up (first run only) and explain a bundled scene with a bundled model, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m nbexplain.demo --out "${1:-out/demo}"
