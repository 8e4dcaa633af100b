#!/usr/bin/env bash
# Create/refresh the project virtual environment at .venv/ (idempotent).
#
# Order matters (DESIGN.md §4): torch first, then mmcv 2.1.0 compiled from its PyPI sdist against that torch
# (--no-build-isolation, so the build sees torch and compiles the CPU ops), then the rest of the OpenMMLab stack.
# The mmcv wheel is cached outside the repo, keyed by the torch version, so a fresh clone does not rebuild it.
# A stamp file records the requirement set; a second call with the same set installs nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0"
MMCV_VERSION="2.1.0"
STAMP="$VENV/.mmprune4u-stamp"
STAMP_KEY="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" | sha1sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ]; then
  exit 0
fi

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
   || command -v nvidia-smi >/dev/null 2>&1; then
  echo "[setup] NOTE: a GPU driver is present. This script builds the CPU path. For CUDA ops, install a CUDA torch"
  echo "[setup]       and rebuild mmcv with FORCE_CUDA=1 (see README 'GPU users')."
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

echo "[setup] 1/4 torch ${TORCH_VERSION} (CPU wheel) and build tools"
$PIP install -q "torch==${TORCH_VERSION}" "setuptools<81" wheel ninja "numpy<2"

WHEEL_DIR="${MMPRUNE4U_WHEEL_CACHE:-$HOME/.cache/mmprune4u/wheels}/torch-${TORCH_VERSION}-$(uname -m)"
mkdir -p "$WHEEL_DIR"
if ! ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl >/dev/null 2>&1; then
  echo "[setup] 2/4 compiling mmcv ${MMCV_VERSION} with CPU ops (about 5 minutes on 2 cores; cached in $WHEEL_DIR)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" CFLAGS="-DNDEBUG -fwrapv -O3 -g0" \
    $PIP wheel -q --no-deps --no-build-isolation "mmcv==${MMCV_VERSION}" -w "$WHEEL_DIR"
else
  echo "[setup] 2/4 mmcv ${MMCV_VERSION} wheel found in cache"
fi

echo "[setup] 3/4 OpenMMLab stack and the rest"
$PIP install -q "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl "mmengine==0.10.7" "mmdet==3.3.0" \
  "nuscenes-devkit==1.2.0" "spconv==2.3.8" numba lyft-dataset-sdk trimesh plyfile scikit-image tensorboard \
  "networkx>=2.5" "numpy<2" matplotlib rich pytest pytest-timeout pytest-xdist
# --no-deps: mmdet3d's requirements pull open3d (1.1 GB, only its visualiser needs it).
$PIP install -q --no-deps "mmdet3d==1.4.0"

echo "[setup] 4/4 this plugin (editable)"
$PIP install -q --no-deps --no-build-isolation -e "$ROOT"

$VENV/bin/python -c "import torch, mmcv, mmcv.ops, mmengine, mmdet, mmdet3d, spconv; print('[setup] ok: torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet3d', mmdet3d.__version__)"
echo "$STAMP_KEY" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - start )) s"
