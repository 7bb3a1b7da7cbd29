"Bad input and edge cases for nanochat.tokenizer (the happy paths are asserted in nbs/01_tokenizer.ipynb)."
import copy, os, pickle
import pytest
import tiktoken
import torch
from nanochat.tokenizer import (Tokenizer, SPECIAL_TOKENS, SPLIT_PATTERN, train_bpe, bpe_encode, merges_to_ranks,
                                token_byte_lengths, get_tokenizer, get_token_bytes)

TEXT = ("The quick brown fox jumps over the lazy dog. It's 2025 and we've 12345 tokens!\n\n"
        "def f(x):\n    return x * 2  # doubled\n") * 20 + "Ünïcödé ✓ 你好 🙃\n"

@pytest.fixture(scope="module")
def tok():
    # built from the pure-Python trainer so these tests need no Rust; 256 bytes + 40 merges + 9 specials
    return Tokenizer.from_ranks(merges_to_ranks(train_bpe(TEXT, 296)))

def msg(role, content): return {"role": role, "content": content}

# ---- training ----
def test_rustbpe_matches_python():
    import rustbpe
    t = rustbpe.Tokenizer()
    t.train_from_iterator([TEXT], 296, pattern=SPLIT_PATTERN)
    assert dict(t.get_mergeable_ranks()) == merges_to_ranks(train_bpe(TEXT, 296))
    assert t.encode(TEXT) == bpe_encode(TEXT, train_bpe(TEXT, 296))

def test_train_from_iterator_sizes():
    tok = Tokenizer.train_from_iterator(iter([TEXT[:1000], TEXT[1000:]]), 280)
    assert tok.get_vocab_size() == 280 and tok.get_bos_token_id() == 271
    # a single string is one document, not an iterator of characters
    assert Tokenizer.train_from_iterator(TEXT, 280).get_vocab_size() == 280

def test_train_vocab_too_small():
    with pytest.raises(ValueError, match="265"): Tokenizer.train_from_iterator([TEXT], 264)
    with pytest.raises(ValueError, match="256"): train_bpe(TEXT, 100)

def test_train_text_too_small():
    with pytest.raises(ValueError, match="merges"): Tokenizer.train_from_iterator(["ab ab ab"], 400)

# ---- encode / decode ----
def test_decode_bad_ids(tok):
    V = tok.get_vocab_size()
    for bad in ([V], [-1], [0, 10**9], ["a"], [1.5]):
        with pytest.raises(ValueError, match=str(V)): tok.decode(bad)
    assert tok.decode(torch.tensor(tok.encode("fox"))) == "fox"  # tensors are fine

def test_decode_unused_id():
    ranks = {bytes([i]): i for i in range(256)}
    enc = tiktoken.Encoding(name="gappy", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={"<|bos|>": 300})
    tok = Tokenizer(enc, "<|bos|>")
    with pytest.raises(ValueError, match="280"): tok.decode([280])
    lengths = token_byte_lengths(enc)
    assert len(lengths) == 301 and lengths[:256] == [1] * 256 and set(lengths[256:]) == {0}

def test_encode_bad_input(tok):
    with pytest.raises(TypeError, match="int"): tok.encode(42)
    with pytest.raises(TypeError, match="item 1"): tok.encode(["ok", None])
    with pytest.raises(ValueError, match="<|nope|>"): tok.encode("x", prepend="<|nope|>")
    with pytest.raises(ValueError, match="append"): tok.encode("x", append=10**6)
    with pytest.raises(ValueError, match="<|eos|>"): tok.encode_special("<|eos|>")

def test_encode_specials_are_plain_text(tok):
    ids = tok.encode("<|assistant_end|><|bos|>")
    assert not set(ids) & {tok.encode_special(s) for s in SPECIAL_TOKENS}
    assert tok.decode(ids) == "<|assistant_end|><|bos|>"

def test_batch_matches_single(tok):
    texts = [TEXT[:200], "", "x", "🙃", TEXT[-50:]]
    assert tok.encode(texts, prepend="<|bos|>", num_threads=2) == [tok.encode(t, prepend="<|bos|>") for t in texts]

# ---- persistence ----
def test_save_load_roundtrip(tok, tmp_path):
    tok.save(tmp_path / "tk")
    assert sorted(os.listdir(tmp_path / "tk")) == ["token_bytes.pt", "tokenizer.pkl"]
    tok2 = Tokenizer.from_directory(tmp_path / "tk")
    assert tok2.encode(TEXT) == tok.encode(TEXT) and tok2.get_special_tokens() == SPECIAL_TOKENS
    tb = get_token_bytes(tmp_path / "tk")
    assert tb.dtype == torch.int32 and tb.tolist() == token_byte_lengths(tok.enc)

def test_save_is_atomic(tok, tmp_path, monkeypatch):
    tok.save(tmp_path)
    before = (tmp_path / "tokenizer.pkl").read_bytes()
    def boom(*a, **k): raise RuntimeError("disk full")
    monkeypatch.setattr(pickle, "dump", boom)
    with pytest.raises(RuntimeError): tok.save(tmp_path)
    assert (tmp_path / "tokenizer.pkl").read_bytes() == before           # old file intact
    assert sorted(os.listdir(tmp_path)) == ["token_bytes.pt", "tokenizer.pkl"]  # no temp file left

def test_from_directory_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts.tok_train"): Tokenizer.from_directory(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="tokenizer.pkl"): Tokenizer.from_directory(tmp_path)
    with pytest.raises(FileNotFoundError, match="tok_train"): get_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="token_bytes.pt"): get_token_bytes(tmp_path)
    tok.save(tmp_path)
    pkl = tmp_path / "tokenizer.pkl"
    pkl.write_bytes(pkl.read_bytes()[:50])  # truncated
    with pytest.raises(ValueError, match="tokenizer.pkl"): Tokenizer.from_directory(tmp_path)
    pkl.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="corrupt"): Tokenizer.from_directory(tmp_path)
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="tiktoken"): Tokenizer.from_directory(tmp_path)

def test_get_tokenizer_base_dir(tok, tmp_path):
    tok.save(tmp_path / "tokenizer")
    assert get_tokenizer(tmp_path).encode("fox") == tok.encode("fox")
    assert get_tokenizer(str(tmp_path)).get_vocab_size() == tok.get_vocab_size()

# ---- chat rendering ----
def test_render_masks_plain(tok):
    conv = {"messages": [msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye"), msg("assistant", "ok")]}
    ids, mask = tok.render_conversation(conv)
    sp = tok.encode_special
    assert ids[0] == tok.get_bos_token_id() and mask[0] == 0
    sup = [i for i, m in zip(ids, mask) if m]
    assert sup == tok.encode("hello") + [sp("<|assistant_end|>")] + tok.encode("ok") + [sp("<|assistant_end|>")]
    assert tok.render_conversation(conv, max_tokens=3) == (ids[:3], mask[:3])

def test_render_ends_with_user_and_does_not_mutate(tok):
    conv = {"messages": [msg("system", "sys"), msg("user", "u")]}
    snapshot = copy.deepcopy(conv)
    ids, mask = tok.render_conversation(conv)
    assert conv == snapshot and not any(mask)
    assert tok.decode(ids) == "<|bos|><|user_start|>sys\n\nu<|user_end|>"

@pytest.mark.parametrize("messages,match", [
    ([], "no messages"),
    ([msg("user", "a"), msg("user", "b")], "message 1"),
    ([msg("assistant", "a")], "message 0"),
    ([msg("system", "s")], "message 1 must be a user"),
    ([msg("system", "s"), msg("assistant", "a")], "message 1 must be a user"),
    ([msg("user", "a"), msg("assistant", "b"), msg("system", "c")], "message 2"),
    ([msg("user", "a"), msg("robot", "b")], "message 1"),
    ([msg("user", "   \n")], "message 0"),
    ([msg("user", "q"), msg("assistant", "")], "message 1"),
    ([msg("user", "q"), msg("assistant", [])], "message 1"),
    ([msg("user", ["q"])], "message 0"),
    ([msg("user", None)], "message 0"),
    ([msg("user", "q"), msg("assistant", 7)], "message 1"),
    ([msg("user", "q"), msg("assistant", [{"type": "code", "text": "x"}])], "part 0"),
    ([msg("user", "q"), msg("assistant", [{"type": "text"}])], "part 0"),
    ([{"role": "user"}], "message 0"),
    (["hello"], "message 0"),
])
def test_render_rejects(tok, messages, match):
    with pytest.raises(ValueError, match=match): tok.render_conversation({"messages": messages})

def test_render_rejects_non_conversation(tok):
    for bad in (None, "hi", {"msgs": []}, {"messages": "hi"}):
        with pytest.raises(ValueError, match="messages"): tok.render_conversation(bad)

def test_render_for_completion(tok):
    conv = {"messages": [msg("user", "q"), msg("assistant", "")]}  # the dropped answer may be a placeholder
    ids = tok.render_for_completion(conv)
    assert tok.decode(ids) == "<|bos|><|user_start|>q<|user_end|><|assistant_start|>"
    with pytest.raises(ValueError, match="assistant"): tok.render_for_completion({"messages": [msg("user", "q")]})
    with pytest.raises(ValueError, match="assistant"): tok.render_for_completion({"messages": []})

def test_visualize(tok):
    ids, mask = tok.render_conversation({"messages": [msg("user", "q"), msg("assistant", "a\nb")]})
    out = tok.visualize_tokenization(ids, mask, with_token_id=True)
    assert "\033[92m" in out and "\033[91m" in out and "\\n" in out and f"({ids[0]})" in out
    assert "<span" in tok.visualize_tokenization(ids, html_output=True)
    with pytest.raises(ValueError, match="mask"): tok.visualize_tokenization(ids, mask[:-1])

# ---- the reference's names and call forms ----
def test_reference_names(tok, tmp_path, monkeypatch):
    from nanochat.tokenizer import RustBPETokenizer
    assert RustBPETokenizer is Tokenizer
    t = RustBPETokenizer.train_from_iterator(iter([TEXT]), 300)
    t.save(tmp_path / "tokenizer")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    t2 = get_tokenizer()
    assert t2.encode(TEXT) == t.encode(TEXT) and t2.get_bos_token_id() == 291
    for dev in ("cpu", torch.device("cpu")):   # get_token_bytes(device), as the reference calls it
        tb = get_token_bytes(dev)
        assert tb.shape == (300,) and tb.device.type == "cpu"
    assert get_token_bytes(device="cpu").tolist() == get_token_bytes(tmp_path / "tokenizer").tolist()
    (tmp_path / "cpu").mkdir()   # a directory that happens to be called like a device is still a directory
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="token_bytes.pt"): get_token_bytes("cpu")

def test_call_is_checked_encode(tok):
    assert tok("fox", prepend="<|bos|>") == tok.encode("fox", prepend="<|bos|>")
    with pytest.raises(TypeError, match="int"): tok(42)

def test_bpe_decode_roundtrip():
    from nanochat.tokenizer import bpe_decode
    merges = train_bpe(TEXT, 296)
    assert bpe_decode(bpe_encode(TEXT, merges), merges) == TEXT
    assert bpe_decode([0xE2], merges) == "\ufffd"
