"""Pretrain a base model (nanochat's base_train). Defaults are the d20 speedrun's.

    python -m scripts.base_train --depth=20                                          # one GPU (or CPU/MPS)
    torchrun --standalone --nproc_per_node=8 -m scripts.base_train -- --depth=20     # one node of 8 GPUs
    torchrun --nnodes=2 --node-rank=0 --master-addr=10.0.0.1 --master-port=29500 --nproc-per-node=8 \
        -m scripts.base_train -- --depth=26                                          # each of 2 nodes (node-rank 0, 1)

Checkpoints go to $NANOCHAT_BASE_DIR/base_checkpoints/d<depth>/; `--resume` continues the last one exactly,
`--resume-from-step=N` the one of step N. Every flag also takes the reference's underscore spelling
(`--device_batch_size=16`); `--run=NAME` logs to wandb under that name ('dummy', the default: no wandb);
`--grad-clip=C` clips the global gradient norm (off by default; the norm is logged every step either way).
`python -m scripts.base_train --help` lists every flag. The code lives in nanochat/pretrain.py (nbs/05_pretrain.ipynb).
"""
from nanochat.common import run_cli
from nanochat.pretrain import main

if __name__ == "__main__":
    run_cli(main)
