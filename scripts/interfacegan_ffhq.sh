#!/usr/bin/env bash
# InterFaceGAN on MobileStyleGAN-FFHQ, end to end, from a scored store:
#   boundaries for pose, smile, age, gender and eyeglasses in W and Z, conditional boundaries,
#   their correlations, edit grids, evaluations (plain vs conditional) and one HTML report.
#
#   bash scripts/interfacegan_ffhq.sh [STORE] [OUT]      (defaults: runs/ffhq runs/ffhq-interfacegan)
#
# Build the store first (resumable; about 40 minutes for 10,000 samples on a 2-core CPU):
#   facelatent sample --model mobilestylegan-ffhq --n 10000 --psi 1.0 --store runs/ffhq --batch 8
set -euo pipefail

STORE=${1:-runs/ffhq}
OUT=${2:-runs/ffhq-interfacegan}
N_EVAL=${N_EVAL:-32}
FL=${FACELATENT:-facelatent}
mkdir -p "$OUT/boundaries" "$OUT/edits" "$OUT/evaluations"

# Attribute -> the store score it is fitted on (log-odds where a probability saturates).
declare -A SCORE=([pose]=yaw [smile]=smile_logit [age]=age [gender]=gender_logit
                  [eyeglasses]=eyeglasses)
ATTRS=(pose smile age gender eyeglasses)

for space in w z; do
  for a in "${ATTRS[@]}"; do
    "$FL" boundary fit --store "$STORE" --attribute "${SCORE[$a]}" --space "$space" \
      --ratio 0.02 --split 0.7 --seed 0 --out "$OUT/boundaries/${a}_${space}.npz" --json \
      > "$OUT/boundaries/${a}_${space}.json"
  done
done

# Conditional boundaries (W): each attribute made orthogonal to the ones it is entangled with.
B="$OUT/boundaries"
"$FL" boundary condition "$B/age_w.npz" --on "$B/gender_w.npz" --out "$B/age_c_gender_w.npz"
"$FL" boundary condition "$B/age_w.npz" --on "$B/eyeglasses_w.npz" --out "$B/age_c_eyeglasses_w.npz"
"$FL" boundary condition "$B/eyeglasses_w.npz" --on "$B/age_w.npz" --out "$B/eyeglasses_c_age_w.npz"
"$FL" boundary condition "$B/gender_w.npz" --on "$B/age_w.npz" --out "$B/gender_c_age_w.npz"
"$FL" boundary condition "$B/smile_w.npz" --on "$B/gender_w.npz" --out "$B/smile_c_gender_w.npz"

for space in w z; do
  "$FL" boundary correlate "$B"/{pose,smile,age,gender,eyeglasses}_"$space".npz \
    --heatmap "$OUT/correlation_${space}.png" --json > "$OUT/correlation_${space}.json"
done

# Edit grids in W: eight seeds, -3..+3 sigma.
for a in "${ATTRS[@]}"; do
  "$FL" edit --seeds 0-7 --boundary "$B/${a}_w.npz" --range -3 3 --steps 7 --psi 0.7 \
    --size 192 --out "$OUT/edits/${a}_w"
done

# Conditional edit grids: the same seeds, each edit made orthogonal to its entangled attribute.
declare -A COND=([age]=gender [eyeglasses]=age [gender]=age [smile]=gender)
for a in "${!COND[@]}"; do
  "$FL" edit --seeds 0-7 --boundary "$B/${a}_w.npz" --condition "$B/${COND[$a]}_w.npz" \
    --range -3 3 --steps 7 --psi 0.7 --size 192 --out "$OUT/edits/${a}_w_given_${COND[$a]}"
done

# Evaluations: plain vs conditional where a condition applies.
for a in "${ATTRS[@]}"; do
  extra=()
  if [[ -n "${COND[$a]:-}" ]]; then extra=(--condition "$B/${COND[$a]}_w.npz"); fi
  "$FL" evaluate --store "$STORE" --boundary "$B/${a}_w.npz" "${extra[@]}" --n "$N_EVAL" \
    --range -3 3 --steps 7 --out "$OUT/evaluations/${a}_w" --json > "$OUT/evaluations/${a}_w.json"
done

"$FL" report "$STORE" --boundaries "$B" --evaluations "$OUT"/evaluations/*_w \
  --edits "$OUT"/edits/* --out "$OUT/report.html"
echo "wrote $OUT/report.html"
