#!/usr/bin/env bash
# The main job on the embedded default: the whole pipeline, tiny, on CPU, offline (no hub downloads), ~12 minutes on
# 2 cores after the first install:
#   bash scripts/runcpu.sh
# corpus -> tokenizer -> base pretraining -> base loss -> CORE-offline -> midtraining -> chat eval -> SFT -> chat eval
# -> RL -> chat eval -> the report card -> how to talk to the model. Everything goes to $NANOCHAT_BASE_DIR (default
# ~/.cache/nanochat-cpu, kept apart from a real run's ~/.cache/nanochat). Started again after an interruption, it
# skips the stages that finished (NANOCHAT_RERUN=1 runs them all again).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat-cpu}"
export NANOCHAT_DATA=embedded NANOCHAT_TASKS=offline
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
# fp32 or bf16 on this CPU? Measured, not assumed (bf16 is ~2x faster on CPUs with AVX512-BF16/AMX, ~50x slower on
# AVX2-only ones). NANOCHAT_DTYPE=float32 or bfloat16 forces a choice.
export NANOCHAT_DTYPE=${NANOCHAT_DTYPE:-$(python -c "
from nanochat.common import cpu_matmul_probe
p = cpu_matmul_probe()
print('bfloat16' if p['bfloat16'] >= 1.3 * p['float32'] else 'float32')")}
echo "compute dtype on this CPU: $NANOCHAT_DTYPE"
# torch.compile fuses the training step's element-wise work (norms, RoPE, ReLU², soft cap): 1.5-2.4x here at depth 2.
# Its CPU backend writes and compiles C++, so it is on only when a C compiler is found.
COMPILE=--no-compile
if command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then COMPILE=--compile; fi
echo "torch.compile for pretraining and midtraining: ${COMPILE#--}"
start=$SECONDS

stage report_reset python -m nanochat.report reset
if [ ! -f "$NANOCHAT_BASE_DIR/base_data_embedded/shard_01822.parquet" ]; then
  stage corpus python -m nanochat.dataset --embedded
fi
# vocab 4,096: a tiny model spends most of its compute on the unembedding at large V
stage tokenizer python -m scripts.tok_train --vocab-size=4096 --max-chars=100000000
stage tokenizer_eval python -m scripts.tok_eval
stage base_train python -m scripts.base_train --depth=2 --max-seq-len=256 --device-batch-size=16 --total-batch-size=4096 \
    --num-iterations=440 --eval-every=100 --eval-tokens=32768 --log-every=50 $COMPILE $(resume_flag "$NANOCHAT_BASE_DIR/base_checkpoints/d2")
stage base_loss python -m scripts.base_loss --device-batch-size=16 --split-tokens=32768
# CORE on the registry-shipped subset of its tasks (printed as "CORE-offline (N of 22 tasks)", never as CORE)
stage base_eval python -m scripts.base_eval --max-per-task=24
# midtraining: the chat format, multiple choice, calculator calls, identity, spelling (packed rows, all tokens)
stage mid_train python -m scripts.mid_train --device-batch-size=16 --total-batch-size=4096 --num-iterations=150 \
    --eval-every=50 --eval-tokens=32768 --log-every=25 $COMPILE $(resume_flag "$NANOCHAT_BASE_DIR/mid_checkpoints/d2")
stage chat_eval_mid python -m scripts.chat_eval -i mid -x 40 -m 48
# SFT: padded whole conversations, loss only on what the assistant must say. The reference fine-tunes its d20 at 2% of
# the pretraining LRs (--init-lr-frac=0.02): a nudge to a model that already knows a lot. This 1.4M-parameter model
# has a format and a tool to learn, and takes the full LRs for 500 steps (8,000 conversations, about half of the
# mixture). With 200 steps, whether the arithmetic skill appears depends on the base model's random draw (a cliff
# edge); at 500 this run's SFT model answers about half of 64 held-out problems (pass@1 printed at RL's step 0).
stage chat_sft python -m scripts.chat_sft --device-batch-size=8 --target-examples-per-step=16 --num-iterations=500 \
    --init-lr-frac=1.0 --eval-every=250 --eval-examples=128 --eval-metrics-every=500 --eval-metrics-max-problems=256 \
    --log-every=100
stage chat_eval_sft python -m scripts.chat_eval -i sft -x 40 -m 48
# RL on verifiable rewards: sample 8 answers per arithmetic question, reward the right ones (held-out pass@k printed)
stage chat_rl python -m scripts.chat_rl --task=Arithmetic --num-steps=30 --examples-per-step=16 --num-samples=8 \
    --max-new-tokens=96 --eval-examples=64 --eval-every=15 --init-lr-frac=0.2 --log-every=10
stage chat_eval_rl python -m scripts.chat_eval -i rl -a GSM8K -x 40 -m 48
stage report python -m nanochat.report generate
stage chat_samples python -m scripts.chat_cli -i rl -t 0 -m 64 -p "Who are you?" \
    -p "Sam has 12 boxes with 7 pens in each box. How many pens does Sam have?" -p "Spell the word: window"

print_timings
echo "== done in $((SECONDS - start))s; outputs in $NANOCHAT_BASE_DIR (report card: $NANOCHAT_BASE_DIR/report/report.md)"
echo "== talk to the model (export NANOCHAT_BASE_DIR=$NANOCHAT_BASE_DIR first):"
echo "  python -m scripts.chat_cli -i rl                       # in the terminal; -p \"Why is the sky blue?\" for one answer"
echo "  python -m scripts.chat_web -i rl --host 127.0.0.1      # web UI at http://127.0.0.1:8000/, OpenAI API at http://127.0.0.1:8000/v1"
