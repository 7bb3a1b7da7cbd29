"""Talk to a nanochat model in the terminal: streamed replies, calculator calls shown in brackets.

    python -m scripts.chat_cli                          # interactive; 'clear' starts over, 'quit' leaves
    python -m scripts.chat_cli -i mid -p "Hello!"       # one reply from the midtrained model
    python -m scripts.chat_cli -t 0 -k 50 -g d20 -s 700 # greedy, a given tag and step

The code lives in nanochat/chat_cli.py (nbs/07b_chat_cli.ipynb).
"""
from nanochat.common import run_cli
from nanochat.chat_cli import chat_cli_main

if __name__ == "__main__":
    run_cli(chat_cli_main)
