"""Midtrain a base model on conversations (nanochat's mid_train): the chat format, tool calls, multiple choice,
identity and spelling, with the pretraining objective.

    python -m scripts.mid_train                                                        # one GPU (or CPU/MPS)
    torchrun --standalone --nproc_per_node=8 -m scripts.mid_train -- --device-batch-size=16   # one node of 8 GPUs

Reads base_checkpoints/<tag>/, writes mid_checkpoints/<tag>/; `--resume` continues the last one exactly.
`python -m scripts.mid_train --help` lists every flag. The code lives in nanochat/midtrain.py (nbs/06_midtrain.ipynb).
"""
from nanochat.common import run_cli
from nanochat.midtrain import main

if __name__ == "__main__":
    run_cli(main)
