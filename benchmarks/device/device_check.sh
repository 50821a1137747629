#!/usr/bin/env bash
# The prepared device run: install jaxdyn without dependencies (the machine has JAX and no
# internet) and run `python -m benchmarks.device` from the repository root into
# "$OUT/device_check" (the device tool returns what is written under $OUT). Extra arguments go to
# it, e.g. `bash benchmarks/device/device_check.sh --only env bench_theorem2`.
#   MNIST: the copy built into jaxdyn (jaxdyn/datasets/mnist), unless JAXDYN_DATA_DIR names a folder.
set -u
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/results}"
# --no-build-isolation: setuptools from the environment (an isolated build would download it)
python -m pip install -q --no-deps --no-build-isolation -e . \
  || echo "[device_check.sh] pip install failed; running jaxdyn from the checkout"
if [ -n "${JAXDYN_DATA_DIR:-}" ] && [ ! -d "$JAXDYN_DATA_DIR" ]; then  # then the built-in copy
  echo "[device_check.sh] no MNIST folder $JAXDYN_DATA_DIR; using the built-in copy"; unset JAXDYN_DATA_DIR
fi
export JAXDYN_CACHE_DIR=/tmp/jaxdyn_cache MPLBACKEND=Agg
nvidia-smi -L 2>/dev/null || true
# 510 s: with the install and start-up the command stays under the device tool's 600 s per call
exec python -m benchmarks.device --out "$OUT/device_check" --work-dir /tmp/jaxdyn_device_work \
  --budget-s "${BUDGET_S:-510}" "$@"
