"""Print the compression table (bytes per token) of the trained tokenizer.

    python -m scripts.tok_eval
"""
from nanochat.common import run_cli
from nanochat.tok_train import eval_main

if __name__ == "__main__":
    run_cli(eval_main)
