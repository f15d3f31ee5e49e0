#!/usr/bin/env bash
# Set up, then run every test, the slow ones on real model files included.
set -euo pipefail
cd "$(dirname "$0")/.."
FACELATENT_EXTRAS=test bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
