"""Capstone stage 2 (continued) — the KV cache of the inference engine.

    pytest lessons/capstone/test_capstone_kvcache.py -q                        # your cache (adapters.make_kv_cache)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_kvcache.py   # the course's nanochat.engine.KVCache

The oracles: the course's GPT (`nanochat.gpt.GPT`, seeded random weights, grouped-query attention) run once over a
whole sequence without a cache — its logits are what any correct cache must reproduce when the same tokens arrive
in pieces — plus direct checks of what `insert_kv` returns, of growth past the starting capacity (every layer, keys
and values) and of `prefill` from one row into many. When a check fails, the message names the usual mistake your
numbers match.
"""
import pytest, torch
from grading import first_bad
from adapters import make_kv_cache

torch.set_num_threads(1)
ATOL, RTOL = 1e-4, 1e-4


def tiny_gpt(seed=0):
    "Depth 3, 4 query heads sharing 2 kv heads, every matrix random (a fresh init zeroes some, hiding mistakes)."
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    cfg = GPTConfig(sequence_len=32, vocab_size=97, n_layer=3, n_head=4, n_kv_head=2, n_embd=64)
    with torch.device("meta"): model = GPT(cfg)
    model.to_empty(device="cpu"); model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2: p.normal_(0, p.size(1) ** -0.5)
    return model.eval()


def new_cache(model, batch, seq_len):
    c = model.config
    return make_kv_cache(batch, c.n_kv_head, seq_len, c.n_embd // c.n_head, c.n_layer)


def pos_of(cache):
    p = cache.get_pos()
    assert isinstance(p, int), f"get_pos() must return a Python int, got {type(p).__name__}"
    return p


def test_insert_kv_returns_everything_and_advances_after_the_last_layer():
    B, H, D, L = 2, 3, 5, 2
    c = make_kv_cache(B, H, 8, D, L)
    assert pos_of(c) == 0, "a new cache holds no positions: get_pos() must start at 0"
    k, v = torch.full((B, H, 3, D), 1.0), torch.full((B, H, 3, D), 2.0)
    c.insert_kv(0, k, v)
    assert pos_of(c) == 0, (
        f"after layer 0 of {L} inserted 3 positions, get_pos() is already {c.get_pos()}: the position must advance "
        "only after the LAST layer has inserted. Every layer writes the same positions; advancing per layer moves "
        "layer 1's keys to the wrong place and gives the model the wrong RoPE offset.")
    c.insert_kv(1, k, v)
    assert pos_of(c) == 3, f"after every layer inserted 3 positions get_pos() must be 3, got {c.get_pos()}"
    k_all, v_all = c.insert_kv(0, torch.full((B, H, 1, D), 3.0), torch.full((B, H, 1, D), 4.0))
    assert torch.is_tensor(k_all) and torch.is_tensor(v_all), "insert_kv must return a pair of tensors (k_all, v_all)"
    if tuple(k_all.shape) == (B, H, 1, D):
        raise AssertionError("insert_kv returned only the NEW keys/values (B, H, 1, D). Attention needs every cached "
                             "position of this layer: return (B, H, pos + T_new, D), the old positions followed by the new.")
    assert tuple(k_all.shape) == (B, H, 4, D) and tuple(v_all.shape) == (B, H, 4, D), (
        f"insert_kv after 3 cached positions and 1 new must return k, v of shape {(B, H, 4, D)}, got "
        f"{tuple(k_all.shape)} and {tuple(v_all.shape)}")
    want_k = torch.tensor([1., 1., 1., 3.])[None, None, :, None].expand(B, H, 4, D)
    want_v = torch.tensor([2., 2., 2., 4.])[None, None, :, None].expand(B, H, 4, D)
    if torch.equal(k_all, want_v) or torch.equal(v_all, want_k):
        raise AssertionError("insert_kv returned the values where the keys belong (or the reverse): keep keys at "
                             "index 0 and values at index 1, and return (k, v) in that order")
    msg = first_bad(k_all, want_k, 0, 0) or first_bad(v_all, want_v, 0, 0)
    assert not msg, f"insert_kv's returned keys/values are not the 3 cached positions followed by the new one: {msg}"
    c.reset()
    assert pos_of(c) == 0, "reset() must bring get_pos() back to 0"


@pytest.mark.parametrize("capacity", [32, 4])
def test_cached_forward_equals_full_forward(capacity):
    "A prefill of 8 tokens, then 1 at a time, then a chunk of 5: the logits of one full pass, to fp32 round-off."
    model = tiny_gpt()
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(ids)
        cache, outs, t = new_cache(model, 2, capacity), [], 0
        for n in [8] + [1] * 11 + [5]:
            outs.append(model(ids[:, t:t + n], kv_cache=cache)); t += n
        got = torch.cat(outs, dim=1)
    pos = pos_of(cache)
    if pos == 24 * model.config.n_layer:
        raise AssertionError(f"after 24 tokens get_pos() is {pos} = 24 x {model.config.n_layer} layers: the position "
                             "advances at every layer's insert; advance it once, after the last layer")
    assert pos == 24, f"after feeding 24 tokens through the model get_pos() must be 24, got {pos}"
    msg = first_bad(got, full, ATOL, RTOL)
    if msg:
        grew = " (this cache started with room for 4 positions, so it had to grow: see test_growth_keeps_every_layer)" if capacity < 24 else ""
        first_step = first_bad(got[:, :8], full[:, :8], ATOL, RTOL)
        where = ("the first 8 positions (one prefill into an empty cache) are already wrong: check the first insert "
                 "and what insert_kv returns" if first_step else
                 "the prefill matches but later tokens do not: the cached positions are not what the model wrote "
                 "there, or the new ones land at the wrong place")
        raise AssertionError(f"cached logits differ from one full forward pass{grew}: {where}. {msg}")


def test_growth_keeps_every_layer():
    "The reference's own regression test, in spirit: 6 layers, capacity 4, a 5th position forces growth."
    B, H, D, L = 2, 3, 5, 6
    c = make_kv_cache(B, H, 4, D, L)
    for i in range(4):
        for l in range(L): c.insert_kv(l, torch.full((B, H, 1, D), float(i)), torch.full((B, H, 1, D), 100.0 * i))
    assert pos_of(c) == 4
    outs = [c.insert_kv(l, torch.full((B, H, 1, D), 4.0), torch.full((B, H, 1, D), 400.0)) for l in range(L)]
    assert pos_of(c) == 5, f"after a 5th position in a cache built for 4, get_pos() must be 5, got {c.get_pos()}"
    want_k = torch.arange(5.)[None, None, :, None].expand(B, H, 5, D)
    bad = []
    for l, (k, v) in enumerate(outs):
        assert tuple(k.shape) == (B, H, 5, D), f"layer {l}: insert_kv must return (B, H, 5, D) after growth, got {tuple(k.shape)}"
        for kind, got, want in (("keys", k, want_k), ("values", v, 100 * want_k)):
            for h in range(H):
                for b in range(B):
                    if not torch.equal(got[b, h, :4], want[b, h, :4]): bad.append((l, kind, b, h))
    if not bad: return
    # in-place resize_ keeps the first (layer 0, keys, row 0, head 0) block and shifts the rest (a few blocks can
    # land on another block that holds the same numbers, since keys are i in every layer)
    if (0, "keys", 0, 0) not in bad and len(bad) >= L * 2 * B * H // 2:
        raise AssertionError(
            f"after growing, layer 0's keys of row 0, head 0 kept their positions 0-3 but {len(bad)} of {L * 2 * B * H} "
            "(layer, keys/values, row, head) blocks changed: shifted by the growth. That is exactly what an in-place resize_ of the "
            "(layers, 2, B, H, T, D) tensor does: it keeps the flat storage and re-reads it with the new T's strides. "
            "Allocate a new, bigger tensor and copy the cached positions into it.")
    raise AssertionError(f"after growing past the starting capacity, positions 0-3 changed in {len(bad)} of "
                         f"{L * 2 * B * H} (layer, keys/values, row, head) blocks, first {bad[0]}: the old positions "
                         "must be copied into the bigger storage unchanged (did the copy cover only some layers, or "
                         "start from a fresh empty tensor?)")


def test_prefill_broadcasts_one_row_to_many():
    "One prompt run once (batch 1), forked into 3 rows, each continued with its own token."
    model = tiny_gpt(seed=2)
    prompt = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(3))
    nxt = torch.tensor([[5], [17], [42]])
    with torch.inference_mode():
        one = new_cache(model, 1, 10)
        model(prompt, kv_cache=one)
        many = new_cache(model, 3, 16)
        many.prefill(one)
        pos = pos_of(many)
        assert pos == 10, (f"after prefill from a cache holding 10 positions, get_pos() must be 10, got {pos}"
                           + (": prefill must also take over the other cache's position" if pos == 0 else ""))
        got = model(nxt, kv_cache=many)[:, -1]
        want = torch.stack([model(torch.cat([prompt[0], nxt[r]])[None])[0, -1] for r in range(3)])
    ok = [not first_bad(got[r], want[r], ATOL, RTOL) for r in range(3)]
    if all(ok): return
    if ok[0] and not any(ok[1:]):
        raise AssertionError("after prefill from a 1-row cache, row 0 continues correctly but rows 1 and 2 do not: the "
                             "prompt's keys and values must be copied into EVERY row (broadcast the single row over "
                             "the batch axis), not only into row 0")
    raise AssertionError(f"after prefill, continuing rows {[r for r in range(3) if not ok[r]]} gives logits that differ "
                         f"from a full forward pass over prompt + token: {first_bad(got, want, ATOL, RTOL)}")
