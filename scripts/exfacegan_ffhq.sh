#!/usr/bin/env bash
# ExFaceGAN on MobileStyleGAN-FFHQ from a scored store: identity boundaries, a synthetic dataset
# (paper sampling) and the random-perturbation baseline with the same offset norms, and one
# quality report comparing them.
#
#   bash scripts/exfacegan_ffhq.sh [STORE] [OUT]     (defaults: runs/ffhq runs/ffhq-exfacegan)
#   IDENTITIES=200 PER_IDENTITY=20 MAX_OFF=5 ENGINE=local bash scripts/exfacegan_ffhq.sh
#
# Build the store first (see scripts/interfacegan_ffhq.sh). About 25 minutes per 4,000 images
# on a 2-core CPU; every step resumes where it stopped when run again.
set -euo pipefail

STORE=${1:-runs/ffhq}
OUT=${2:-runs/ffhq-exfacegan}
IDENTITIES=${IDENTITIES:-200}
PER_IDENTITY=${PER_IDENTITY:-20}
MAX_OFF=${MAX_OFF:-5}
ENGINE=${ENGINE:-local}
FL=${FACELATENT:-facelatent}

if [ ! -f "$OUT/identities/boundaries.npz" ]; then
  "$FL" identity fit --store "$STORE" --references 1000 --model sface --space w \
    --out "$OUT/identities"
fi
for mode in paper random; do
  "$FL" dataset build --identities "$OUT/identities" --identities-max "$IDENTITIES" \
    --per-identity "$PER_IDENTITY" --max-off "$MAX_OFF" --mode "$mode" --seed 0 \
    --engine "$ENGINE" --out "$OUT/synth-$mode"
done
"$FL" dataset report "$OUT/synth-paper" --baseline "$OUT/synth-random" \
  --out "$OUT/report.html" --json > "$OUT/report.json"
echo "wrote $OUT/report.html"
