"""Supervised fine-tuning (nanochat's chat_sft): whole conversations, padded per batch, with the loss on the
assistant's tokens only, normalised by the supervised tokens of the whole optimizer step (`--loss-norm=reference`:
upstream nanochat's mean per micro-batch, averaged over the micro-batches, instead).

    python -m scripts.chat_sft                                               # one GPU (or CPU/MPS), from the mid model
    torchrun --standalone --nproc_per_node=8 -m scripts.chat_sft             # one node of 8 GPUs
    python -m scripts.chat_sft --source=base                                 # skip midtraining

Reads mid_checkpoints/<tag>/ (or base_checkpoints/), writes chatsft_checkpoints/<tag>/; `--resume` continues exactly.
`python -m scripts.chat_sft --help` lists every flag. The code lives in nanochat/sft.py (nbs/07_sft.ipynb).
"""
from nanochat.common import run_cli
from nanochat.sft import main

if __name__ == "__main__":
    run_cli(main)
