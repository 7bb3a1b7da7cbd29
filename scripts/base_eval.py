"""CORE score of a base model (or CORE-offline, the 13-task subset built from registry-shipped data, when offline).

    python -m scripts.base_eval                                          # the largest base model, last step, all examples
    python -m scripts.base_eval --max-per-task=500                       # a quicker estimate
    python -m scripts.base_eval --eval-data=offline --max-per-task=16    # no internet
    torchrun --standalone --nproc_per_node=8 -m scripts.base_eval -- --model-tag=d20

The procedure is upstream nanochat's (same examples, few-shot shots, prompts, token spans and decision rule), so a
CORE figure from here is comparable with the reference's; --procedure=course selects the course's older variant.

Writes <base_dir>/base_eval/<model_tag>.csv and the report card's "Base model evaluation" section.
The code lives in nanochat/evaluate.py (nbs/09_eval.ipynb).
"""
from nanochat.common import run_cli
from nanochat.evaluate import main

if __name__ == "__main__":
    run_cli(main)
