#!/usr/bin/env bash
# The "$100 speedrun" on one 8xH100 node: FineWeb-EDU -> 65,536-token tokenizer -> d20 base model (~561M params,
# ~11.2B tokens = 20 tokens/param, ~4e19 FLOPs; about 3 h of base_train at ~45-50% MFU).
#   bash scripts/speedrun.sh            (wrap it in `screen`/`tmux`: it runs for hours)
# Stages are appended as the course lands them (midtraining, SFT, RL, evaluation, serving).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}"
export NANOCHAT_DATA=fineweb
export OMP_NUM_THREADS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}

# d20 at ratio 20 needs 11.2B tokens ~ 54B characters ~ 216 shards of 250M characters; 240 leaves a margin.
# 8 shards first (enough for the tokenizer), the rest in the background while the tokenizer trains.
python -m nanochat.dataset -n 8
python -m nanochat.dataset -n 240 &
DOWNLOAD_PID=$!

python -m scripts.tok_train --max-chars=2000000000 --vocab-size=65536
python -m scripts.tok_eval

wait $DOWNLOAD_PID
torchrun --standalone --nproc_per_node="$NPROC" -m scripts.base_train -- --depth=20
torchrun --standalone --nproc_per_node="$NPROC" -m scripts.base_loss -- --model-tag=d20
