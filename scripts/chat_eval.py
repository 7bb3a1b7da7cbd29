"""Evaluate a chat model on ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval and SpellingBee (and ChatCORE).

    python -m scripts.chat_eval -i sft                                   # all six tasks
    python -m scripts.chat_eval -i mid -a "ARC-Easy|GSM8K" -x 100        # two tasks, the first 100 problems of each
    torchrun --standalone --nproc_per_node=8 -m scripts.chat_eval -- -i sft

-i is base|mid|sft|rl; `python -m scripts.chat_eval --help` lists every flag. Results go to the report section
"Chat evaluation <source>". The code lives in nanochat/chat_eval.py (nbs/05c_chat_eval.ipynb).
"""
from nanochat.common import run_cli
from nanochat.chat_eval import main

if __name__ == "__main__":
    run_cli(main)
