"""Reinforcement learning on verifiable rewards (GSM8K; offline: the Arithmetic stand-in) from the SFT checkpoint.

    python -m scripts.chat_rl                                              # one process (CPU, MPS or one GPU)
    torchrun --standalone --nproc_per_node=8 -m scripts.chat_rl            # one node: 16 questions per step, 2 per GPU
    torchrun --standalone --nproc_per_node=8 -m scripts.chat_rl -- --run=rl1 --std-adv --kl-coef=0.01
    torchrun --standalone --nproc_per_node=8 -m scripts.chat_rl -- --loss-norm=reference   # upstream's per-pass means
    python -m scripts.chat_rl --task=Arithmetic --device-type=cpu --num-steps=40 --num-samples=8 ...   # tiny, offline
    python -m scripts.chat_rl --help                                       # every flag (hyphen or underscore spellings)

Checkpoints go to <base_dir>/chatrl_checkpoints/<tag>/ (add --resume to continue exactly); the notebook
nbs/08_rl.ipynb explains the algorithm and its knobs.
"""
from nanochat.common import run_cli
from nanochat.rl import main

if __name__ == "__main__":
    run_cli(main)
