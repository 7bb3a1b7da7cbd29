"""Tests for the Rust BPE trainer `rustbpe` (built from rustbpe/ by `pip install -e .`).

The oracle is the course's deliberately naive pure-Python BPE (`nanochat.tokenizer.train_bpe`): split with the
same regex, count every adjacent pair, merge the most frequent one (ties: the smallest pair), repeat. rustbpe's fast
incremental algorithm must learn exactly the same merges, encode to the same ids, and its vocabulary
must give the same ids when loaded into tiktoken.
"""
import json
from collections import Counter

import pytest
import regex
import tiktoken

import rustbpe
from nanochat.tokenizer import train_bpe, bpe_encode, bpe_merge, bpe_pair_counts, merges_to_ranks

# ------------------------------------------------------------------------------------------------
# fixture text: the Python docs' help topics ship with the standard library, so always offline


@pytest.fixture(scope="module")
def full_text():
    from pydoc_data.topics import topics
    return "\n".join(topics[k] for k in sorted(topics))  # ~0.5 MB


@pytest.fixture(scope="module")
def text(full_text):
    return full_text[:150_000]  # small enough for the naive trainer (~1.5 s for 200 merges)


# ------------------------------------------------------------------------------------------------
# the reference: the course's readable pure-Python BPE (nbs/01_tokenizer.ipynb), naive by design


def tied_merges(text, merges, pattern):
    "Per learned merge: did a rival pair have the same count (so only the tie-break rule decided it)?"
    chunks = Counter(tuple(c.encode("utf-8")) for c in regex.findall(pattern, text))
    tied = []
    for pair, new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        counts = bpe_pair_counts(chunks)
        tied.append(sum(n == counts[pair] for n in counts.values()) > 1)
        chunks = {bpe_merge(ids, pair, new_id): n for ids, n in chunks.items()}
    return tied


def train(text, vocab_size, **kwargs):
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(text if isinstance(text, list) else [text], vocab_size, **kwargs)
    return tok


def to_tiktoken(tok):
    return tiktoken.Encoding(name="rustbpe", pat_str=tok.get_pattern(),
                             mergeable_ranks={b: i for b, i in tok.get_mergeable_ranks()}, special_tokens={})


# ------------------------------------------------------------------------------------------------
# correctness against the reference


@pytest.mark.parametrize("pattern", [rustbpe.NANOCHAT_PATTERN, rustbpe.GPT4_PATTERN])
def test_matches_reference(text, pattern):
    vocab_size = 256 + 200
    ref = train_bpe(text, vocab_size, pattern)
    assert sum(tied_merges(text, ref, pattern)) > 10  # many merges were decided by the tie-break rule, which is tested too
    tok = train(text, vocab_size, pattern=pattern)
    assert tok.get_pattern() == pattern
    ranks = tok.get_mergeable_ranks()
    assert len(ranks) == vocab_size
    assert [i for _, i in ranks] == list(range(vocab_size))
    assert [b for b, _ in ranks[:256]] == [bytes([i]) for i in range(256)]
    # each merged token's bytes are the concatenation of the reference's pair
    vocab = sorted(merges_to_ranks(ref), key=merges_to_ranks(ref).get)
    assert [b for b, _ in ranks] == vocab
    # identical encodings: reference encoder, rustbpe, tiktoken
    probe = text[:20_000] + " Hello world! It's 2025: 1234567 🙃\r\n\n  end  "
    ids = tok.encode(probe)
    assert ids == bpe_encode(probe, ref, pattern)
    assert to_tiktoken(tok).encode_ordinary(probe) == ids
    assert b"".join(vocab[i] for i in ids) == probe.encode("utf-8")


def hf_train(text, vocab_size, pattern):
    "HuggingFace `tokenizers` BPE set up like rustbpe: same split regex, byte-level, no specials."
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=0, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return tok


def hf_merged_bytes(hf_tok):
    "The bytes of each token HF's merges created, in merge order."
    # HF's ByteLevel shows each byte as a printable character (GPT-2's table): printable Latin-1
    # bytes stand for themselves, the other 68 bytes become chr(256), chr(257), ... in byte order
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    char_to_byte = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}
    to_bytes = lambda s: bytes(char_to_byte[c] for c in s)
    merges = json.loads(hf_tok.to_str())["model"]["merges"]
    return [to_bytes(a) + to_bytes(b) for a, b in (m.split(" ") if isinstance(m, str) else m for m in merges)]


def test_matches_huggingface_until_first_tie(text):
    # HF numbers its byte tokens differently, so on a tie it may pick another pair than we do;
    # up to the first tied merge both must learn the same tokens in the same order
    pytest.importorskip("tokenizers")
    vocab_size, pattern = 256 + 60, rustbpe.NANOCHAT_PATTERN
    tied = tied_merges(text, train_bpe(text, vocab_size, pattern), pattern)
    n = tied.index(True) if True in tied else len(tied)
    assert n >= 10  # the check below must mean something
    ours = [b for b, _ in train(text, vocab_size, pattern=pattern).get_mergeable_ranks()[256:]]
    assert hf_merged_bytes(hf_train(text, vocab_size, pattern))[:n] == ours[:n]


def test_default_pattern_is_gpt4(text):
    tok = train(text[:5000], 260)
    assert tok.get_pattern() == rustbpe.GPT4_PATTERN
    assert rustbpe.NANOCHAT_PATTERN == rustbpe.GPT4_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}{1,2}")
    # the two patterns differ on digit runs: 1-3 vs 1-2 digits per chunk
    assert regex.findall(rustbpe.GPT4_PATTERN, "12345") == ["123", "45"]
    assert regex.findall(rustbpe.NANOCHAT_PATTERN, "12345") == ["12", "34", "5"]


def test_classic_example():
    # "aaabdaaabac": aa (4x) -> 256; then "ab" and "<aa>a" tie at 2, the smaller pair (97, 98) wins
    tok = train("aaabdaaabac", 259)
    assert tok.get_mergeable_ranks()[256:] == [(b"aa", 256), (b"ab", 257), (b"aaab", 258)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_tiktoken_large_vocab(full_text):
    # more merges than the reference can afford: tiktoken must still reproduce rustbpe's ids
    text = full_text
    tok = train(text, 4096, pattern=rustbpe.NANOCHAT_PATTERN)
    enc = to_tiktoken(tok)
    assert enc.n_vocab == 4096
    assert enc.encode_ordinary(text) == tok.encode(text)
    assert enc.decode(tok.encode(text)) == text


def test_batch_encode(text):
    tok = train(text, 512)
    texts = [text[:3000], "", "x", "Hello world! 🙃", text[5000:9000], " \n\n\t "]
    assert tok.batch_encode(texts) == [tok.encode(t) for t in texts]
    assert tok.batch_encode([]) == []
    assert tok.encode("") == []


def test_deterministic_across_buffer_sizes(text):
    docs = text.split("\n\n")  # many documents, so batches and threads really split the work
    ranks = [train(docs, 400, buffer_size=bs).get_mergeable_ranks() for bs in (1, 7, 100, 8192)]
    assert all(r == ranks[0] for r in ranks)
    # a generator works as well as a list, and training twice replaces the vocabulary
    tok = train(docs, 300)
    tok.train_from_iterator((d for d in docs), 400)
    assert tok.get_mergeable_ranks() == ranks[0]


# ------------------------------------------------------------------------------------------------
# bad input: clear Python exceptions


def test_errors():
    tok = rustbpe.Tokenizer()
    with pytest.raises(RuntimeError, match="not trained"):
        tok.encode("hello")
    with pytest.raises(RuntimeError, match="not trained"):
        tok.get_mergeable_ranks()
    with pytest.raises(RuntimeError, match="not trained"):
        tok.batch_encode(["hello"])
    assert tok.get_pattern() == ""
    with pytest.raises(ValueError, match="255"):
        tok.train_from_iterator(["hello"], 255)
    with pytest.raises(ValueError, match="-3"):
        tok.train_from_iterator(["hello"], -3)
    with pytest.raises(ValueError, match="buffer_size"):
        tok.train_from_iterator(["hello"], 300, buffer_size=0)
    with pytest.raises(TypeError, match=r"item 2 is of type bytes"):
        tok.train_from_iterator(["a", "b", b"c"], 300)
    with pytest.raises(TypeError, match=r"item 0 is of type int"):
        tok.train_from_iterator([1], 300)
    with pytest.raises(TypeError):
        tok.train_from_iterator(42, 300)  # not iterable
    with pytest.raises(ValueError, match="no text"):
        tok.train_from_iterator([], 300)
    with pytest.raises(ValueError, match="no text"):
        tok.train_from_iterator(["", ""], 300)
    with pytest.raises(ValueError, match="invalid split pattern"):
        tok.train_from_iterator(["hello"], 300, pattern="(unclosed")
    with pytest.raises(TypeError):
        tok.batch_encode("not a list")

    # an exception raised inside the iterator reaches the caller unchanged
    class Boom(Exception):
        pass

    def gen():
        yield "some text"
        raise Boom("from the iterator")

    with pytest.raises(Boom, match="from the iterator"):
        tok.train_from_iterator(gen(), 300, buffer_size=1)
    # failed calls left the tokenizer untrained
    with pytest.raises(RuntimeError, match="not trained"):
        tok.encode("hello")


def test_early_stop_warns():
    # "ab ab" has chunks "ab" and " ab": only 2 merges are possible
    tok = rustbpe.Tokenizer()
    with pytest.warns(UserWarning, match="no pairs left"):
        tok.train_from_iterator(["ab ab"], 300)
    assert tok.get_mergeable_ranks()[256:] == [(b"ab", 256), (b" ab", 257)]


def test_no_leaked_references():
    import sys
    docs = ["hello world"] * 10
    it = iter(docs)
    before = sys.getrefcount(it), sys.getrefcount(docs[0])
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(it, 260, buffer_size=3)
    assert (sys.getrefcount(it), sys.getrefcount(docs[0])) == before
