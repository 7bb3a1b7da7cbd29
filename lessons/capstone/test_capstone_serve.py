"""Capstone stage 10 — serving: text that is safe to stream, and the attention of a batched decode step.

    pytest lessons/capstone/test_capstone_serve.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_serve.py   # the course's own implementation

The oracles: for streaming, the properties a client must be able to rely on (the text received is exactly the reply
cut before its first stop string; no character ever arrives in halves; nothing that later turns out to be part of a
stop string is ever sent; text is sent as soon as those rules allow) and nanochat's `TextStream`, which follows them;
for ragged attention, plain attention computed row by row on each row's own prefix. When your numbers disagree, the
grader re-runs the computation with the usual mistakes built in and names the one that reproduces them.
"""
import math
import pytest, torch
from grading import first_bad
from adapters import run_stream_text, run_ragged_attention

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------------
# Streaming text. Tokens are single bytes here (ids 0..255), so a character of 2-4 UTF-8 bytes spans 2-4 tokens:
# exactly what a byte-level BPE does to rare characters.

def decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def oracle_stream(ids, stop):
    "The chunks a careful server sends: one entry per token, then one for the end of the stream."
    out, pending, held, stopped = [], [], "", False
    def release(text, final):
        nonlocal held, stopped
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0: stopped, held = True, ""; return text[:cut]
        held = ""
        if not final:
            for s in stop:
                for k in range(min(len(s) - 1, len(text)), len(held), -1):
                    if text.endswith(s[:k]): held = text[-k:]; break
        return text[:len(text) - len(held)]
    for t in ids:
        if stopped: out.append(""); continue
        pending.append(t)
        text = decode(pending)
        if text.endswith("\ufffd") and len(pending) < 4: out.append(""); continue
        pending = []
        out.append(release(held + text, False))
    out.append("" if stopped else release(held + (decode(pending) if pending else ""), True))
    return out


CASES = [  # (name, text as bytes, stop strings)
    ("ascii", "hello world".encode(), []),
    ("emoji and CJK split into bytes", "tea 🍵 and 日本語 ok".encode(), []),
    ("accents", "café, naïve, über".encode(), []),
    ("stop string", "the END of it".encode(), ["END"]),
    ("a stop string's first letter that is not one", "the Egg and the Ear".encode(), ["END"]),
    ("overlapping start", "xaaab tail".encode(), ["aab"]),
    ("two stop strings, the earlier wins", "abcXYdefXZ".encode(), ["XZ", "XY"]),
    ("stop string made of a multi-byte character", "so 😀 done".encode(), ["😀"]),
    ("stop at the very start", "STOP here".encode(), ["STOP"]),
    ("invalid UTF-8 from the model", bytes([104, 105, 0xFF, 0xFE, 33, 33]), []),
    ("a character cut off by the end of the stream", "ok 😀".encode()[:-2], []),
]


def diagnose_stream(name, ids, stop, got):
    want = oracle_stream(ids, stop)
    full = "".join(want)
    if len(got) != len(want):
        return (f"[{name}] expected {len(want)} entries (one per token, then one from finishing), got {len(got)}: "
                "return the text to send after EVERY token ('' when nothing can be sent yet), plus one last entry")
    joined = "".join(got)
    valid = "\ufffd" not in decode(ids)
    if valid and "\ufffd" in joined:
        return (f"[{name}] your stream contains U+FFFD '\ufffd' although the text is valid UTF-8: you decoded tokens "
                "one at a time (or sent text that ended in U+FFFD). Keep the tokens of an unfinished character and "
                "decode them together once the character is whole")
    for s in stop:
        if s in joined:
            return f"[{name}] the stop string {s!r} reached the client: cut the text before its first occurrence"
    if joined != full:
        if full.startswith(joined):
            return (f"[{name}] you sent {joined!r} but the reply is {full!r}: text was lost — did you forget to send "
                    "what you held back when the stream ended (the last entry), or drop text after a false alarm?")
        if joined.startswith(full):
            extra = joined[len(full):]
            if any(s.startswith(extra) for s in stop):
                return (f"[{name}] you sent {joined!r}, want {full!r}: {extra!r} is the beginning of a stop string, and "
                        "you sent it before you knew. Hold back any ending that could start a stop string until the "
                        "next tokens decide — once sent, text cannot be taken back")
            return (f"[{name}] you sent {joined!r}, want {full!r}: stop at the FIRST occurrence of ANY stop string, "
                    "and send nothing after it")
        return f"[{name}] you sent {joined!r}, want {full!r}"
    sent = ""
    for i, (g, w) in enumerate(zip(got, want)):
        sent_next = sent + g
        if len(sent_next) > len(sent + w):
            return (f"[{name}] after token {i} you sent {sent_next!r}, but {sent_next[len(sent + w):]!r} could still "
                    "turn out to be the beginning of a stop string (or of a character): hold it back until the next "
                    "tokens decide — once sent, text cannot be taken back")
        if len(sent_next) < len(sent + w):
            return (f"[{name}] after token {i} you had sent {sent_next!r}, but {(sent + w)!r} was already safe to "
                    "send: release text as soon as it can no longer be part of a stop string or of a character")
        sent = sent_next
    return ""


@pytest.mark.parametrize("name,raw,stop", CASES, ids=[c[0] for c in CASES])
def test_stream_text(name, raw, stop):
    ids = list(raw)
    got = run_stream_text(ids, decode, list(stop))
    assert isinstance(got, list) and all(isinstance(x, str) for x in got), "return a list of str"
    msg = diagnose_stream(name, ids, stop, got)
    assert not msg, msg


def test_stream_matches_nanochat():
    "The oracle of this file and the course's TextStream agree (so the rules above are the ones the server uses)."
    from nanochat.serve import TextStream
    for name, raw, stop in CASES:
        ts = TextStream(decode, stop)
        assert [ts.push(t) for t in raw] + [ts.finish()] == oracle_stream(list(raw), stop), name


# ---------------------------------------------------------------------------------------------------------------
# Ragged attention: one new query per row, each row with its own number of valid cached positions.

def per_row(q, k, v, pos):
    "Plain attention, row by row, on each row's own prefix 0..pos[b]: obviously right, and slow."
    out = []
    for b in range(q.size(0)):
        n = int(pos[b]) + 1
        kb, vb = k[b:b + 1, :, :n], v[b:b + 1, :, :n]
        rep = q.size(1) // k.size(1)
        kb, vb = kb.repeat_interleave(rep, 1), vb.repeat_interleave(rep, 1)
        w = torch.softmax((q[b:b + 1] @ kb.transpose(-2, -1)) / math.sqrt(q.size(-1)), -1)
        out.append(w @ vb)
    return torch.cat(out)


def mistaken(q, k, v, pos, *, mask="le", scale=True, gqa="interleave"):
    "Ragged attention with switches for the usual mistakes."
    rep = q.size(1) // k.size(1)
    if gqa == "interleave": k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    else: k, v = k.repeat(1, rep, 1, 1), v.repeat(1, rep, 1, 1)
    s = q @ k.transpose(-2, -1)
    if scale: s = s / math.sqrt(q.size(-1))
    t = torch.arange(k.size(2))
    m = {"le": t[None] <= pos[:, None], "lt": t[None] < pos[:, None], "none": torch.ones(len(pos), k.size(2), dtype=torch.bool),
         "max": t[None] <= pos.max().expand(len(pos))[:, None], "min": t[None] <= pos.min().expand(len(pos))[:, None]}[mask]
    s = s.masked_fill(~m[:, None, None, :], float("-inf"))
    return torch.softmax(s, -1) @ v


MISTAKES = {
    "no mask: each row also attends to the unused tail of its slot (what an earlier, longer conversation left there)":
        dict(mask="none"),
    "mask with < instead of <=: each row ignores its own new key (position pos[b] holds the token being decoded)":
        dict(mask="lt"),
    "one length for the whole batch (the longest row's): shorter rows see their slot's garbage tail":
        dict(mask="max"),
    "one length for the whole batch (the shortest row's): longer rows lose part of their conversation":
        dict(mask="min"),
    "no 1/sqrt(head_dim) scaling of the scores": dict(scale=False),
    "key/value heads tiled with .repeat instead of .repeat_interleave: query head h must use KV head h // (H / H_kv)":
        dict(gqa="tile"),
}


def make_case(B=4, H=4, H_kv=2, T=9, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, 1, D, generator=g)
    k = torch.randn(B, H_kv, T, D, generator=g)
    v = torch.randn(B, H_kv, T, D, generator=g)
    pos = torch.tensor([0, 3, T - 2, 5][:B])   # every row has an unused tail
    for b in range(B):   # the garbage tail: large, so reading it cannot hide
        k[b, :, pos[b] + 1:] = 3 * torch.randn(H_kv, T - pos[b] - 1, D, generator=g)
        v[b, :, pos[b] + 1:] = 50 + torch.randn(H_kv, T - pos[b] - 1, D, generator=g)
    return q, k, v, pos


@pytest.mark.parametrize("H,H_kv", [(4, 4), (4, 2), (6, 1)])
def test_ragged_attention(H, H_kv):
    q, k, v, pos = make_case(H=H, H_kv=H_kv, seed=H * 10 + H_kv)
    want = per_row(q, k, v, pos)
    got = run_ragged_attention(q.clone(), k.clone(), v.clone(), pos.clone())
    assert isinstance(got, torch.Tensor) and got.shape == want.shape, \
        f"expected a tensor of shape {tuple(want.shape)} (B, H, 1, D), got {getattr(got, 'shape', type(got))}"
    bad = first_bad(got.float(), want, atol=1e-4, rtol=1e-4)
    if bad:
        names = [n for n, kw in MISTAKES.items()
                 if torch.allclose(got.double(), mistaken(q, k, v, pos, **kw).double(), atol=1e-4, rtol=1e-4, equal_nan=True)]
        hint = ("your numbers match this mistake: " + "; ".join(names)) if names else \
            "no known mistake matches: compare one row with plain attention over k[b, :, :pos[b] + 1]"
        pytest.fail(f"ragged attention (H={H}, H_kv={H_kv}) is wrong: {bad}. {hint}")


def test_ragged_attention_rows_independent():
    "A row's output may depend only on its own query, keys and values: change another row and nothing moves."
    q, k, v, pos = make_case(seed=5)
    a = run_ragged_attention(q.clone(), k.clone(), v.clone(), pos.clone())
    k2, v2 = k.clone(), v.clone()
    k2[1] += 1.0; v2[1] -= 2.0
    b = run_ragged_attention(q.clone(), k2, v2, pos.clone())
    for r in (0, 2, 3):
        assert torch.allclose(a[r], b[r], atol=1e-5), \
            f"row {r} changed when only row 1's cache changed: your rows leak into each other (a mask or index across the batch axis?)"
