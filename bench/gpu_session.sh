#!/usr/bin/env bash
# Run ON the lent GPU machine, in one device call (after bench/gpu_wheels.sh here):
#   run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=590)
# Installs the carried wheels, then measures within about 9 minutes: the card, the GPU
# benchmark (CLO attention-only vs TRL DPO on a Qwen2.5-1.5B shape, MFU) and, if time is
# left, the trainer modes on CUDA. Everything lands in $OUT (the device tool brings it back).
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_card.txt"
python3 -c "import torch, transformers, peft, trl; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)" \
  | tee -a "$OUT/gpu_card.txt"
timeout 420 python3 -m bench.gpu_bench --out "$OUT/gpu.txt" 2>&1 | tee "$OUT/gpu_bench.log"
if (( SECONDS < 430 )); then
  # a bigger body than the CPU default, so that activations dominate as on real models
  timeout $(( 560 - SECONDS )) python3 -m bench.bench_trainer_modes --hidden 1536 \
    --layers 8 --batch 8 --max-length 512 --steps 10 2>&1 | tee "$OUT/trainer_modes_gpu.txt"
fi
