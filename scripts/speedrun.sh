#!/usr/bin/env bash
# The "$100 speedrun" on one 8xH100 node (~4 h at ~$24/h): FineWeb-EDU -> 65,536-token tokenizer -> d20 base model
# (~561M params, 11.2B tokens = 20 tokens/param, ~4e19 FLOPs) -> CORE -> midtraining -> SFT -> (RL) -> chat evals ->
# the report card. Run it inside screen so it survives a dropped ssh connection:
#   screen -L -Logfile speedrun.log -S speedrun bash scripts/speedrun.sh
#   WANDB_RUN=d20 bash scripts/speedrun.sh        # log to Weights & Biases (needs `pip install wandb` and a login)
#   RUN_RL=1 bash scripts/speedrun.sh             # also the (optional, as in the reference) RL stage on GSM8K
#   bash scripts/speedrun.sh --dry-run            # every stage, in order, at toy size on the CPU (2 gloo ranks,
#                                                 # embedded data, a temp dir): CI runs this so a typo in a flag or a
#                                                 # stage can never waste a GPU node (DRY_DEVICE=cuda: on a GPU)
#   bash scripts/speedrun.sh --plan               # run nothing: list every stage's command and check that its flags
#                                                 # parse (tools/check_flags.py), on any machine in seconds; with
#                                                 # --dry-run: the dry run's commands
# An interrupted run started again skips the stages that finished and resumes base training from its last
# checkpoint. scripts/run1000.sh is this script with the d32 sizing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

DRY_RUN=0
PLAN=0
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    --plan) PLAN=1 ;;
    *) echo "error: unknown argument $arg (usage: bash scripts/speedrun.sh [--dry-run] [--plan])" >&2; exit 2 ;;
  esac
done

# The sizing (run1000.sh overrides these): depth, rows per GPU per forward, shards to download, tokenizer characters.
DEPTH=${DEPTH:-20}
# 16 rows per GPU at d20, not the reference's 32 (DEVICE_BATCH_SIZE=32 runs that, same total batch, 1 micro-step
# instead of 2): compiled on one H200, d20's training step kept 0.815 of its eager activations (scripts/gpu_check.sh),
# which puts 32 rows at 73.0 GB per rank, 9% headroom on an 80 GB H100; 16 rows need 43.1 GB (bench.bench_gpu_budget)
DEVICE_BATCH_SIZE=${DEVICE_BATCH_SIZE:-16}
SHARDS=${SHARDS:-240}          # d20 at 20 tokens/param: 11.2B tokens ~ 54B chars ~ 216 shards of 250M chars (+margin)
TOK_CHARS=${TOK_CHARS:-2000000000}
WANDB_RUN=${WANDB_RUN:-}
WANDB_BASE=${WANDB_RUN:+--wandb}            # base_train logs to wandb with --wandb
WANDB_CHAT=${WANDB_RUN:+--run=$WANDB_RUN}    # the chat stages take the reference's --run=<name>

if [ "$PLAN" = 1 ]; then
  # `stage` (scripts/common.sh) writes each stage's command to this file instead of running it
  export NANOCHAT_PLAN=$(mktemp -t nanochat_plan_XXXX)
  if [ -d .venv ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
elif [ -z "${NANOCHAT_SKIP_SETUP:-}" ]; then   # gpu_check.sh sets it: a GPU box with its own python and no registry
  bash scripts/setup.sh
  export PATH="$PWD/.venv/bin:$PATH"
fi
export OMP_NUM_THREADS=1

# The real run's flags for every stage. A dry run keeps them all (so a misspelt flag fails in CI, not on the GPU
# node) and appends toy-size overrides after them (argparse: the last value of a flag wins).
TAG=d$DEPTH
TOK=(--max-chars="$TOK_CHARS" --vocab-size=65536)
BASE=(--depth="$DEPTH" --device-batch-size="$DEVICE_BATCH_SIZE" --save-every=1000 $WANDB_BASE)
LOSS=(--model-tag="$TAG" --device-batch-size="$DEVICE_BATCH_SIZE")
CORE=(--model-tag="$TAG")
MID=(--model-tag="$TAG" --device-batch-size="$DEVICE_BATCH_SIZE" $WANDB_CHAT)   # pretraining's rows per GPU (memory)
SFT=(--model-tag="$TAG" $WANDB_CHAT)
RL=(--model-tag="$TAG" $WANDB_CHAT)
EVAL=(-g "$TAG")
if [ "$DRY_RUN" = 1 ]; then
  # 2 CPU processes with gloo stand in for the 8 GPUs; the embedded corpus and the offline tasks for the hub
  export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$(mktemp -d -t nanochat_dryrun_XXXX)}"
  export NANOCHAT_DATA=embedded NANOCHAT_TASKS=offline
  NPROC=${NPROC:-2}
  DEV=${DRY_DEVICE:-cpu}   # gpu_check.sh runs the dry run on cuda
  DOWNLOAD_FIRST=(python -m nanochat.dataset --embedded); DOWNLOAD_REST=(true)
  TOK+=(--vocab-size=512 --max-chars=400000)
  # keep the depth of the real run in the tag (d20/d32), so the stages find each other by it as they would for real
  BASE+=(--depth=2 --model-tag="$TAG" --max-seq-len=64 --device-batch-size=4 --total-batch-size=512 --num-iterations=4
         --eval-every=2 --eval-tokens=1024 --sample-every=-1 --save-every=-1 --device-type="$DEV")
  LOSS+=(--device-batch-size=4 --split-tokens=1024 --device-type="$DEV")
  CORE+=(--max-per-task=4 --device-type="$DEV")
  MID+=(--max-seq-len=64 --device-batch-size=4 --total-batch-size=512 --num-iterations=3 --eval-every=2 --eval-tokens=1024
        --device-type="$DEV")
  SFT+=(--device-batch-size=2 --target-examples-per-step=4 --num-iterations=3 --eval-every=2 --eval-examples=4
        --eval-metrics-every=3 --eval-metrics-max-problems=4 --device-type="$DEV")
  RL+=(--device-batch-size=4 --examples-per-step=2 --num-samples=4 --max-new-tokens=16 --num-steps=2 --eval-every=-1
       --eval-examples=4 --device-type="$DEV")
  EVAL+=(-x 4 -m 16 --device-type="$DEV")
  RUN_RL=1
else
  export NANOCHAT_BASE_DIR="${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}"
  export NANOCHAT_DATA=fineweb NANOCHAT_TASKS=hub
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  if [ "$PLAN" = 1 ]; then
    NPROC=${NPROC:-8}   # nothing runs: no GPU and no free disk needed
  else
    if ! command -v nvidia-smi >/dev/null 2>&1; then
      echo "error: no nvidia-smi: this run needs CUDA GPUs (try --dry-run on a CPU, or scripts/runcpu.sh)" >&2; exit 1
    fi
    NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}
    need_free_gb $((SHARDS / 10 + 20)) "$NANOCHAT_BASE_DIR" "this run (~100 MB per data shard, plus checkpoints)"
  fi
  DOWNLOAD_FIRST=(python -m nanochat.dataset -n 8); DOWNLOAD_REST=(python -m nanochat.dataset -n "$SHARDS")
  RUN_RL=${RUN_RL:-0}
fi
LAUNCH=(torchrun --standalone --nproc_per_node="$NPROC")
echo "speedrun: depth $DEPTH, $NPROC processes, outputs in $NANOCHAT_BASE_DIR$([ "$DRY_RUN" = 1 ] && echo ' (DRY RUN: toy sizes on the CPU)')$([ "$PLAN" = 1 ] && echo ' (PLAN: nothing runs)')"

# Will every stage fit in 80 GB per GPU at the real run's flags? Simulated on the CPU in ~20 s by fake-tensor
# accounting of one step of each stage (bench/bench_gpu_budget.py), before any work: a stage that overflows stops the
# run here, naming the stage and the GB it lacks. A dry run and a plan check the real run's flags too (not the toy
# sizes). NANOCHAT_BUDGET_STAGES=a,b checks only those stages; NANOCHAT_SKIP_BUDGET=1 skips the check.
if [ -z "${NANOCHAT_SKIP_BUDGET:-}" ]; then
  python -m bench.bench_gpu_budget --depth="$DEPTH" --device-batch-size="$DEVICE_BATCH_SIZE" \
      --world="$([ "$DRY_RUN" = 1 ] && echo 8 || echo "$NPROC")" ${NANOCHAT_BUDGET_STAGES:+--stages="$NANOCHAT_BUDGET_STAGES"} --check
fi
stage report_reset python -m nanochat.report reset
# 8 shards (enough for the tokenizer) first, the rest in the background while the tokenizer trains
stage data_first "${DOWNLOAD_FIRST[@]}"
if [ "$PLAN" = 1 ]; then
  if [ "${DOWNLOAD_REST[0]}" != true ]; then stage data_rest "${DOWNLOAD_REST[@]}"; fi
  DOWNLOAD_PID=
else
  "${DOWNLOAD_REST[@]}" & DOWNLOAD_PID=$!
fi
stage tokenizer python -m scripts.tok_train "${TOK[@]}"
stage tokenizer_eval python -m scripts.tok_eval
if [ -n "$DOWNLOAD_PID" ]; then wait $DOWNLOAD_PID; fi
stage base_train "${LAUNCH[@]}" -m scripts.base_train -- "${BASE[@]}" \
  $(resume_flag "$NANOCHAT_BASE_DIR/base_checkpoints/$TAG")
stage base_loss "${LAUNCH[@]}" -m scripts.base_loss -- "${LOSS[@]}"
stage base_eval "${LAUNCH[@]}" -m scripts.base_eval -- "${CORE[@]}"
# the identity conversations ship with the package (nanochat/identity_conversations.jsonl): nothing to download
stage mid_train "${LAUNCH[@]}" -m scripts.mid_train -- "${MID[@]}"
stage chat_eval_mid "${LAUNCH[@]}" -m scripts.chat_eval -- -i mid "${EVAL[@]}"
stage chat_sft "${LAUNCH[@]}" -m scripts.chat_sft -- "${SFT[@]}"
stage chat_eval_sft "${LAUNCH[@]}" -m scripts.chat_eval -- -i sft "${EVAL[@]}"
if [ "$RUN_RL" = 1 ]; then
  stage chat_rl "${LAUNCH[@]}" -m scripts.chat_rl -- "${RL[@]}"
  stage chat_eval_rl "${LAUNCH[@]}" -m scripts.chat_eval -- -i rl -a GSM8K "${EVAL[@]}"
fi
stage report python -m nanochat.report generate
if [ "$PLAN" = 1 ]; then
  # every stage's command line, parsed by the parsers that would read it (PLAN_JSON=FILE: also save the parsed flags)
  echo "== the plan: checking every stage's flags"
  rc=0; python tools/check_flags.py "$NANOCHAT_PLAN" ${PLAN_JSON:+--json "$PLAN_JSON"} || rc=$?
  rm -f "$NANOCHAT_PLAN"; exit $rc
fi
print_timings
echo "talk to it: python -m scripts.chat_cli -p 'Why is the sky blue?'   |   python -m scripts.chat_web (then open http://<this-host>:8000/)"
