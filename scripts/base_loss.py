"""Bits per byte of a base model on the train and val splits, and a few greedy samples.

    python -m scripts.base_loss                                                      # the largest model, last step
    torchrun --standalone --nproc_per_node=8 -m scripts.base_loss -- --model-tag=d20

Flags take the reference's underscore spellings too (`--device_batch_size`, `--split_tokens`, `--model_tag`,
`--model_step`). The code lives in nanochat/pretrain.py (nbs/05_pretrain.ipynb).
"""
from nanochat.common import run_cli
from nanochat.pretrain import loss_main

if __name__ == "__main__":
    run_cli(loss_main)
