#!/usr/bin/env bash
# GPU training benchmark: `geossl bench train` with resnet50, 13 bands, 128 px, batch 256, bf16,
# channels_last and torch.compile, on one run and the same input (see docs/benchmarks.md).
#
# On a lent, offline GPU machine (torch, timm, lightning, ... preinstalled; TorchGeo and the geo
# stack as wheels prepared here with ../shared/tools/gpu-wheels.sh into .whl/):
#
#   tools/gpu_bench.sh [OUT_DIR] [more `geossl bench train` flags]
#
# e.g. from the device tool: `tools/gpu_bench.sh "$OUT"` (results land in OUT_DIR as
# bench_train.json and bench_train.md). Without .whl/ it uses the Python environment as is.
# Each geossl row compiles its model afresh (about a minute per resnet50 compile): if the device
# tool's 10-minute limit is tight, split the rows, e.g. `tools/gpu_bench.sh OUT --only "[ceiling,
# geossl-simclr, torchgeo-simclr]"` then `--only "[geossl-moco, torchgeo-moco, loader-packed,
# e2e-simclr-packed]"`.
# The MAE rows (geossl MAE against torchgeo.tasks.MAE, TorchGeo 0.10 only; a ViT at its native
# 224 px, --mae-backbone, default vit_tiny_patch16_224) run with the others; alone:
# `tools/gpu_bench.sh OUT --only "[geossl-mae, torchgeo-mae]" --mae-backbone vit_base_patch16_224`.
set -euo pipefail
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

out=${1:-runs/bench-gpu}
shift || true
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, torchgeo, timm, lightning; print('torch', torch.__version__, \
'torchgeo', torchgeo.__version__, 'timm', timm.__version__, 'lightning', lightning.__version__)"

# leave two cores to the main process and the pin-memory thread
workers=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))
python3 -m geossl.cli bench train --device cuda --backbone resnet50 --bands 13 --size 128 \
  --batch-size 256 --precision bf16-mixed --compile --steps 30 --warmup 10 \
  --workers "$workers" --num-chips 4096 --out "$out" "$@" 2>&1 | tee "$out/bench_train.log"
