"""Train the tokenizer on the pretraining text and save it to <base dir>/tokenizer.

    python -m scripts.tok_train --max-chars=2000000000 --vocab-size=65536
"""
from nanochat.common import run_cli
from nanochat.tok_train import train_main

if __name__ == "__main__":
    run_cli(train_main)
