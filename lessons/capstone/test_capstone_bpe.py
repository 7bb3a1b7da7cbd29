"""Capstone stage 1 — byte-level BPE, graded against the Rust trainer and tiktoken; and the chat loss mask.

    pytest lessons/capstone -q                        # your implementation (through adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone   # the course's own implementation

The oracles: `rustbpe` (the course's Rust trainer) for the merges and `tiktoken` (OpenAI's production encoder,
loaded with the oracle's merges) for the token ids. When a test fails it tells you where you first disagree and
what usually causes that. For the chat loss mask the oracle is the rendering rule itself, written out piece by piece
in this file; when your (ids, mask) differ, the grader re-renders the conversation with the usual mistakes built
in and names the one that reproduces your output.
"""
import copy
import pytest, rustbpe, tiktoken
from pydoc_data.topics import topics
from adapters import run_train_bpe, run_encode, run_decode, run_render_conversation

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


# ---------------------------------------------------------------------------------------------------------------
# The chat loss mask. The encoding handed to your code: the oracle's BPE vocabulary plus the 9 special tokens.

SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
            "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]


@pytest.fixture(scope="module")
def chat_enc(oracle):
    tok, _ = oracle
    ranks = {bytes(b): i for b, i in tok.get_mergeable_ranks()}
    return tiktoken.Encoding(name="capstone-chat", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIALS)})


def oracle_render(conv, max_tokens, enc, mistake=None):
    """The rule, piece by piece: (ids, mask, what each position is). `mistake` builds one usual error in instead."""
    sp = enc.encode_single_token
    ids, mask, what = [], [], []
    def add(toks, m, label):
        toks = [toks] if isinstance(toks, int) else toks
        ids.extend(toks); mask.extend([m] * len(toks)); what.extend([label] * len(toks))
    msgs = list(conv["messages"])
    if msgs[0]["role"] == "system":
        if mistake == "system dropped": msgs = msgs[1:]
        elif mistake == "system as its own user turn": msgs = [{"role": "user", "content": msgs[0]["content"]}] + msgs[1:]
        elif mistake == "system joined without the blank line":
            msgs = [{"role": "user", "content": msgs[0]["content"] + msgs[1]["content"]}] + msgs[2:]
        else: msgs = [{"role": "user", "content": msgs[0]["content"] + "\n\n" + msgs[1]["content"]}] + msgs[2:]
    flip = mistake == "mask inverted"
    if mistake != "no <|bos|>": add(sp("<|bos|>"), 0, "<|bos|>")
    for m in msgs:
        c = m["content"]
        if m["role"] == "user":
            u = 1 if mistake == "user trained on" else 0
            add(sp("<|user_start|>"), u, "<|user_start|>"); add(enc.encode_ordinary(c), u, "user text"); add(sp("<|user_end|>"), u, "<|user_end|>")
            continue
        add(sp("<|assistant_start|>"), 1 if mistake == "assistant_start supervised" else 0, "<|assistant_start|>")
        parts = [{"type": "text", "text": c}] if isinstance(c, str) else c
        if mistake == "parts joined as text": parts = [{"type": "text", "text": "".join(p["text"] for p in parts)}]
        for p in parts:
            t = enc.encode_ordinary(p["text"])
            if p["type"] == "text": add(t, 1, "assistant text")
            elif p["type"] == "python":
                pm = 0 if mistake == "tool call not trained" else 1
                add(sp("<|python_start|>"), pm, "<|python_start|>"); add(t, pm, "python call"); add(sp("<|python_end|>"), pm, "<|python_end|>")
            else:
                om = 1 if mistake == "tool output trained on" else 0
                add(sp("<|output_start|>"), om, "<|output_start|>"); add(t, om, "tool output"); add(sp("<|output_end|>"), om, "<|output_end|>")
        add(sp("<|assistant_end|>"), 0 if mistake == "assistant_end not supervised" else 1, "<|assistant_end|>")
    if flip: mask = [1 - m for m in mask]
    cut = {"truncated one short": max_tokens - 1, "truncated one long": max_tokens + 1}.get(mistake, max_tokens)
    return ids[:cut], mask[:cut], what[:cut]


MISTAKES = {
    "mask inverted": "your mask is the exact opposite of the rule: 1 must mark what the ASSISTANT writes (its text, its "
                     "tool calls, <|assistant_end|>), 0 everything given to it",
    "assistant_start supervised": "<|assistant_start|> has mask 1; it must be 0: the runtime inserts it when it is the "
                                  "assistant's turn, so the model never has to predict it",
    "assistant_end not supervised": "<|assistant_end|> has mask 0; it must be 1: learning to STOP is part of the answer, "
                                    "otherwise the chat model rambles past its turn",
    "user trained on": "the user's turn (<|user_start|>, text, <|user_end|>) has mask 1; the user's words are given, "
                       "not predicted: mask 0",
    "tool output trained on": "the tool output (<|output_start|> ... <|output_end|>) has mask 1; the calculator produces it "
                              "at inference time, so it must never be a target: mask 0",
    "tool call not trained": "the python call (<|python_start|> ... <|python_end|>) has mask 0; the model decides to call "
                             "the tool and writes the expression itself, so those tokens are targets: mask 1",
    "parts joined as text": "you encoded the assistant's parts as one plain text; each part is encoded on its own, python "
                            "parts wrapped in <|python_start|>/<|python_end|>, outputs in <|output_start|>/<|output_end|>",
    "no <|bos|>": "the sequence must start with <|bos|> (mask 0)",
    "system dropped": "the system message is missing: fold it into the first user message as system + two newlines + user",
    "system as its own user turn": "the system message became a separate user turn; fold it INTO the first user message "
                                   "(system + two newlines + user), roles then alternate user, assistant, ...",
    "system joined without the blank line": "the system and first user messages are joined without the blank line: use "
                                            "system + two newlines + user",
    "truncated one short": "one token short: keep the first max_tokens ids (and mask values), not max_tokens - 1",
    "truncated one long": "one token too many: keep exactly the first max_tokens ids (and mask values)",
}


def check_render(conv, max_tokens, enc):
    snapshot = copy.deepcopy(conv)
    got = run_render_conversation(conv, max_tokens, enc)
    assert conv == snapshot, "render_conversation modified the conversation it was given: build new lists instead"
    assert isinstance(got, tuple) and len(got) == 2, f"return (ids, mask), got {type(got).__name__}"
    ids, mask = list(got[0]), [int(m) for m in got[1]]
    want_ids, want_mask, what = oracle_render(conv, max_tokens, enc)
    if (ids, mask) == (want_ids, want_mask): return
    assert len(ids) == len(mask), f"ids ({len(ids)}) and mask ({len(mask)}) must have one entry per token"
    for name, why in MISTAKES.items():
        w_ids, w_mask, _ = oracle_render(conv, max_tokens, enc, mistake=name)
        if (ids, mask) == (w_ids, w_mask): pytest.fail(f"your (ids, mask) match a known mistake: {why}.")
    k = next((i for i, (a, b) in enumerate(zip(zip(ids, mask), zip(want_ids, want_mask))) if a != b), min(len(ids), len(want_ids)))
    where = what[k] if k < len(what) else "past the end of the expected sequence"
    pytest.fail(f"first difference at position {k} ({where}): got (id, mask) "
                f"{(ids[k], mask[k]) if k < len(ids) else 'nothing'}, expected "
                f"{(want_ids[k], want_mask[k]) if k < len(want_ids) else 'nothing (the sequence should end here)'}; "
                f"lengths: yours {len(ids)}, expected {len(want_ids)}. Mask 1 only on what the assistant writes.")


U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
TOOL = {"messages": [U("What is 12 times 34?"), A([{"type": "text", "text": "Let me compute: "},
                                                   {"type": "python", "text": "12*34"},
                                                   {"type": "python_output", "text": "408"},
                                                   {"type": "text", "text": "It is 408."}])]}


def test_mask_plain_turns(chat_enc):
    "Two rounds of plain text: the assistant's words and each <|assistant_end|> are the only targets."
    check_render({"messages": [U("Hello, who are you?"), A("I am a small model."), U("Thanks!"), A("You're welcome.")]}, 2048, chat_enc)


def test_mask_tool_call(chat_enc):
    "The assistant writes a python call (trained) and the tool answers (not trained)."
    check_render(TOOL, 2048, chat_enc)


def test_mask_system_prompt(chat_enc):
    "A leading system message is folded into the first user message."
    check_render({"messages": [{"role": "system", "content": "Be brief."}, U("Say hi."), A("Hi.")]}, 2048, chat_enc)


@pytest.mark.parametrize("max_tokens", [1, 7, 20])
def test_mask_truncation(chat_enc, max_tokens):
    "ids and mask are both cut to exactly max_tokens."
    check_render(TOOL, max_tokens, chat_enc)


def test_mask_unicode_and_long(chat_enc):
    "Text pieces are encoded on their own; non-ASCII text and long answers render like everything else."
    long = " ".join(TEXT[:1500].split())
    check_render({"messages": [U("naïve café 🙂 — 日本語?"), A(long), U("and again"),
                               A([{"type": "python", "text": "2**10"}, {"type": "python_output", "text": "1024"}])]}, 2048, chat_enc)
