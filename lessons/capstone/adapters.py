"""The capstone's adapters: the only place the tests touch your code.

Write your implementation wherever you like (a module of your own, a notebook exported with nbdev), then make each
function below call it. Until you do, every test fails with NotImplementedError — that is the starting point.

`CAPSTONE_IMPL=reference pytest lessons` points the adapters at the course's own `nanochat` package instead; CI
runs it that way so the exercises and their graders can never drift from the reference implementation.
"""
import os

REFERENCE = os.environ.get("CAPSTONE_IMPL") == "reference"


def run_train_bpe(text: str, vocab_size: int, pattern: str) -> dict[tuple[int, int], int]:
    """Train byte-level BPE on `text`: split it with the regex `pattern` (use the `regex` package), start from the
    UTF-8 bytes of each chunk, and repeatedly merge the most frequent adjacent pair (ties: the smaller pair (a, b))
    into a new token id 256, 257, ... until the vocabulary has `vocab_size` tokens or no pair is left.
    Returns the merges as {(a, b): new_id}."""
    if REFERENCE:
        from nanochat.tokenizer import train_bpe
        return train_bpe(text, vocab_size, pattern)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_train_bpe to your BPE trainer")


def run_encode(text: str, merges: dict[tuple[int, int], int], pattern: str) -> list[int]:
    """Encode `text` with learned `merges`: split with `pattern`, and in each chunk keep applying the present pair
    that was learned EARLIEST (lowest new id) until no learned pair is left. Returns the token ids."""
    if REFERENCE:
        from nanochat.tokenizer import bpe_encode
        return bpe_encode(text, merges, pattern)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_encode to your encoder")


def run_decode(ids: list[int], merges: dict[tuple[int, int], int]) -> str:
    """Turn token ids back into text: map every id to its bytes (a merged token's bytes are its two parents'
    bytes concatenated), join them, and decode as UTF-8 with errors="replace"."""
    if REFERENCE:
        from nanochat.tokenizer import merges_to_ranks
        vocab = {i: b for b, i in merges_to_ranks(merges).items()}
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_decode to your decoder")
