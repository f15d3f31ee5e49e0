#!/usr/bin/env bash
# Quick start: set up, then generate 16 faces and a grid from the real MobileStyleGAN FFHQ model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/facelatent generate --seeds 0-15 --psi 0.7 --size 256 --out out/faces "$@"
echo "open out/faces/grid.png"
