"""Capstone stage 1 — byte-level BPE, graded against the Rust trainer and tiktoken.

    pytest lessons/capstone -q                        # your implementation (through adapters.py)
    CAPSTONE_IMPL=reference pytest lessons/capstone   # the course's reference implementation

The oracles: `rustbpe` (the course's Rust trainer) for the merges and `tiktoken` (OpenAI's production encoder,
loaded with the oracle's merges) for the token ids. When a test fails it tells you where you first disagree and
what usually causes that.
"""
import pytest, rustbpe, tiktoken
from pydoc_data.topics import topics
from adapters import run_train_bpe, run_encode, run_decode

PATTERN = rustbpe.NANOCHAT_PATTERN  # GPT-4's split pattern with digit runs of 1-2
TEXT = "\n".join(topics[k] for k in sorted(topics))[:30_000]  # Python's own help pages: offline, always there
VOCAB = 256 + 60


def oracle_tokens(text, vocab_size):
    "The oracle's vocabulary as a list of token bytes in id order (256 single bytes, then one per merge)."
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator([text], vocab_size, pattern=PATTERN)
    ranks = tok.get_mergeable_ranks()
    return tok, [b for b, i in sorted(ranks, key=lambda kv: kv[1])]


def tokens_of(merges):
    "Your vocabulary the same way: token bytes in id order, a merged token's bytes = its parents' bytes joined."
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), i in sorted(merges.items(), key=lambda kv: kv[1]):
        if a not in vocab or b not in vocab: raise AssertionError(f"merge {(a, b)} -> {i} uses an id that does not exist yet")
        vocab[i] = vocab[a] + vocab[b]
    if sorted(vocab) != list(range(len(vocab))): raise AssertionError("new token ids must be 256, 257, ... without gaps")
    return [vocab[i] for i in range(len(vocab))]


@pytest.fixture(scope="module")
def oracle():
    return oracle_tokens(TEXT, VOCAB)


def test_tiny_example():
    "Three merges on a text you can follow by hand."
    merges = run_train_bpe("aaabdaaabac", 259, PATTERN)
    assert isinstance(merges, dict), f"run_train_bpe must return a dict {{(a, b): new_id}}, got {type(merges).__name__}"
    # 'aa' occurs 4 times -> 256 ("aaab" becomes [256, a, b]); then (256, a) and (a, b) both occur twice: the tie
    # goes to the smaller pair (97, 98) -> 257; then (256, 257) twice -> 258
    expected = {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert merges == expected, (
        f"on 'aaabdaaabac' the first three merges should be {expected} ('aa', 'ab', 'aaab'), got {merges}. "
        "Count pairs with their multiplicity, merge left to right without overlaps ('aaa' holds ONE non-overlapping "
        "'aa' after merging), and give new tokens the ids 256, 257, ... in order.")


def test_merges_match_oracle(oracle):
    _, want = oracle
    got = tokens_of(run_train_bpe(TEXT, VOCAB, PATTERN))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (
            f"first disagreement at token {i}: you made {g!r}, the oracle made {w!r}. If both pairs have the same "
            "count, the tie goes to the SMALLER pair (compare (a, b) as tuples of ids). If the counts differ, check "
            "that the regex split keeps merges inside chunks and that every chunk's pairs are weighted by how often "
            "that chunk occurs.")
    assert len(got) == len(want), f"expected a vocabulary of {len(want)} tokens for vocab_size={VOCAB}, got {len(got)}"


def test_encode_matches_tiktoken(oracle):
    tok, _ = oracle
    merges = run_train_bpe(TEXT, VOCAB, PATTERN)  # equal to the oracle's once test_merges_match_oracle passes
    enc = tiktoken.Encoding(name="oracle", pat_str=PATTERN, mergeable_ranks=dict(tok.get_mergeable_ranks()), special_tokens={})
    for text in [TEXT[:5000], "Hello world! It's 2026, 12345 apples.", "   spaces\n\n\tand tabs", "naïve café 🙂"]:
        want = enc.encode_ordinary(text)
        got = run_encode(text, merges, PATTERN)
        assert got == want, (
            f"encoding {text[:40]!r}...: first difference at position "
            f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}. "
            "Apply merges in the order they were LEARNED (lowest new id first), not by frequency in this text, "
            "and never merge across the regex chunks.")


def test_decode_roundtrip(oracle):
    merges = run_train_bpe(TEXT, VOCAB, PATTERN)
    for text in [TEXT[:3000], "naïve café 🙂 日本語", ""]:
        ids = run_encode(text, merges, PATTERN)
        assert run_decode(ids, merges) == text, (
            f"decode(encode(x)) != x for {text[:30]!r}: join the BYTES of all tokens first and decode UTF-8 once at "
            "the end — a multi-byte character can be split across tokens.")


def test_bad_vocab_size():
    with pytest.raises(ValueError):
        run_train_bpe("abc", 100, PATTERN)  # fewer than the 256 byte tokens: there is no valid vocabulary
