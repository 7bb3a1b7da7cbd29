"""Capstone stage 2 — the transformer: RoPE, attention and a whole GPT forward pass.

    pytest lessons/capstone/test_capstone_gpt.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_gpt.py   # the course's own implementation

The oracles: RoPE is checked through its defining properties and an independent complex-number formula; attention
against PyTorch's fused `F.scaled_dot_product_attention`; the depth rule against the reference's sizing rule written
out; the initial weights against a replay of the reference's random draws into fresh tensors; the whole model against
the course's `nanochat.gpt.GPT` with fixed random weights (every matrix random, none of the zeros of a fresh init, so every part of the model shows
in the logits). When your logits disagree, the grader re-runs the model with the usual mistakes built in and tells
you which one your numbers match.
"""
import math
import pytest, torch
import torch.nn.functional as F
from grading import first_bad
from adapters import run_rope, run_attention, run_gpt_forward, run_config_from_depth, run_init_weights

torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the graders share the machine)
ATOL, RTOL = 1e-4, 1e-4   # fp32 logits of size ~10: implementations that differ only in rounding agree to ~1e-5


def check_shape(got, want, what):
    assert torch.is_tensor(got), f"{what} must return a torch.Tensor, got {type(got).__name__}"
    assert tuple(got.shape) == tuple(want.shape), f"{what} returned shape {tuple(got.shape)}, want {tuple(want.shape)}"


def matching_mistakes(got, mistakes):
    "Names of the known mistakes (name -> function giving that mistake's output) that reproduce `got`."
    return [name for name, fn in mistakes.items()
            if (w := fn()).shape == got.shape and torch.allclose(got.double(), w.double(), atol=ATOL, rtol=RTOL)]


# ---------------------------------------------------------------------------------------------------------------
# RoPE. An independent oracle: a channel pair (x1, x2) is the complex number x1 + i*x2, and nanochat's RoPE
# multiplies it by exp(-i * pos * theta_j), with theta_j = base**(-2j/D). Computed in float64.

def rope_oracle(x, base=10000.0, layout="split", sign=-1):
    "RoPE of x (B, T, H, D) at positions 0..T-1; `layout` and `sign` let us build the usual mistakes too."
    B, T, H, D = x.shape
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)                 # (D/2,)
    angle = (torch.arange(T, dtype=torch.float64)[:, None] * theta)[None, :, None, :]  # (1, T, 1, D/2)
    x = x.double()
    x1, x2 = (x[..., :D // 2], x[..., D // 2:]) if layout == "split" else (x[..., 0::2], x[..., 1::2])
    z = torch.complex(x1, x2) * torch.polar(torch.ones_like(angle), sign * angle)
    if layout == "split": return torch.cat([z.real, z.imag], dim=-1)
    return torch.stack([z.real, z.imag], dim=-1).flatten(-2)                           # back to (2j, 2j+1) pairs


def rope_mistakes(x, base=10000.0):
    return {"interleaved pairs (2j, 2j+1) instead of split-half pairs (j, j + D/2)": lambda: rope_oracle(x, base, "interleaved"),
            "a rotation in the other direction: (x1*cos - x2*sin, x1*sin + x2*cos)": lambda: rope_oracle(x, base, sign=+1),
            "interleaved pairs AND the other direction": lambda: rope_oracle(x, base, "interleaved", sign=+1),
            "frequencies base**(-j/D) instead of base**(-2j/D)": lambda: rope_oracle(x, base ** 0.5),
            "the default base 10000 instead of the `base` argument": lambda: rope_oracle(x, 10000.0)}


def test_rope_position_zero_is_identity():
    x = torch.randn(2, 5, 3, 16, generator=torch.Generator().manual_seed(0))
    y = run_rope(x)
    check_shape(y, x, "run_rope")
    assert y.dtype == x.dtype, f"run_rope must keep the dtype ({x.dtype}), got {y.dtype}"
    assert torch.allclose(y[:, 0], x[:, 0], atol=1e-6), (
        "at position 0 every angle is 0, so RoPE must leave x unchanged there. Positions are the T axis (dim 1 of "
        "(B, T, H, D)) and start at 0; check you did not rotate along the head axis or start counting at 1.")


def test_rope_rotates_split_half_pairs():
    "A rotation keeps the length of each channel pair: which pairs keep their length tells the layout apart."
    D = 16
    x = torch.randn(1, 9, 2, D, generator=torch.Generator().manual_seed(1))
    y = run_rope(x)
    check_shape(y, x, "run_rope")
    pair_len = lambda t: (t[..., :D // 2] ** 2 + t[..., D // 2:] ** 2).sqrt()      # pairs (j, j + D/2)
    interleaved_len = lambda t: (t[..., 0::2] ** 2 + t[..., 1::2] ** 2).sqrt()      # pairs (2j, 2j+1)
    if not torch.allclose(pair_len(y), pair_len(x), atol=1e-5):
        hint = ("your output keeps the lengths of pairs (2j, 2j+1): that is the INTERLEAVED layout of the RoPE paper. "
                if torch.allclose(interleaved_len(y), interleaved_len(x), atol=1e-5) else "")
        raise AssertionError(
            f"{hint}nanochat pairs channel j with channel j + D/2 (split-half: x1 = x[..., :D/2], x2 = x[..., D/2:]) "
            "and rotates each pair, so sqrt(x1**2 + x2**2) must not change. Both layouts are valid RoPE, but they are "
            "different models: a checkpoint trained with one gives garbage with the other.")


def test_rope_frequencies_and_direction():
    "One unit vector per pair: the output reveals each pair's angle and the direction of the turn."
    D, T = 8, 4
    x = torch.zeros(1, T, D // 2, D)
    for j in range(D // 2): x[0, :, j, j] = 1.0          # head j holds (x1, x2) = (1, 0) in pair j, zeros elsewhere
    y = run_rope(x).double()
    check_shape(y, x, "run_rope")
    for j in range(D // 2):
        angle = torch.arange(T, dtype=torch.float64) * 10000.0 ** (-2 * j / D)
        x1, x2 = y[0, :, j, j], y[0, :, j, j + D // 2]
        if torch.allclose(x1, angle.cos(), atol=1e-5) and torch.allclose(x2, angle.sin(), atol=1e-5):
            raise AssertionError(
                "your rotation turns the other way: (1, 0) at position p should become (cos, -sin) of p*theta, you "
                "give (cos, +sin). Write the pair update as (x1*cos + x2*sin, -x1*sin + x2*cos). Relative positions "
                "work either way, but the sign is baked into trained weights, so it must match nanochat's.")
        assert torch.allclose(x1, angle.cos(), atol=1e-5) and torch.allclose(x2, -angle.sin(), atol=1e-5), (
            f"pair {j} of D={D}: at positions 0..{T - 1} the unit vector (1, 0) should turn to (cos a, -sin a) with "
            f"a = p * 10000**(-2*{j}/{D}) = {angle.tolist()}; got x1={x1.tolist()}, x2={x2.tolist()}. The frequency "
            "of pair j is base**(-2j/D) for j = 0..D/2-1 (pair 0 turns 1 radian per position); if x2 stays 0, "
            "channel j is not paired with channel j + D/2.")


def test_rope_scores_depend_on_relative_position():
    "The property RoPE exists for: q at position m and k at position n score f(m - n), whatever m and n are."
    T, D = 24, 16
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(D, generator=g), torch.randn(D, generator=g)
    rq = run_rope(q.expand(1, T, 1, D).contiguous())[0, :, 0]   # the same q placed at every position
    rk = run_rope(k.expand(1, T, 1, D).contiguous())[0, :, 0]
    S = rq @ rk.T                                                # S[m, n] = score of q at m with k at n
    for off in (-5, 0, 3, 11):
        d = S.diagonal(off)
        assert torch.allclose(d, d[0].expand_as(d), atol=1e-4), (
            f"the score of q at position m with k at position n must depend on m - n only, but along m - n = {-off} "
            f"it varies from {d.min():.4f} to {d.max():.4f}. Rotate q and k by the SAME function of their own "
            "position (angle = position * theta_j), and rotate pairs as rigid 2-D rotations (cos and sin of the same angle).")
    assert not torch.allclose(S.diagonal(0)[0], S.diagonal(1)[0], atol=1e-4), "scores must change with m - n: did RoPE do anything?"


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_rope_matches_formula(base):
    x = torch.randn(2, 13, 3, 32, generator=torch.Generator().manual_seed(3))
    got, want = run_rope(x, base=base), rope_oracle(x, base).float()
    check_shape(got, want, "run_rope")
    if problem := first_bad(got, want, atol=1e-5, rtol=1e-5):
        found = matching_mistakes(got, rope_mistakes(x, base))
        raise AssertionError(f"run_rope(x, base={base}) disagrees with the RoPE formula: {problem}. " + (
            f"Your output matches {found[0]}." if found else
            "Pair channel j with j + D/2, angle = position * base**(-2j/D), (x1, x2) -> (x1*cos + x2*sin, -x1*sin + x2*cos)."))


# ---------------------------------------------------------------------------------------------------------------
# Attention. The oracle: PyTorch's fused SDPA, with GQA sharing done by SDPA itself (enable_gqa).

def sdpa(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.size(1) != q.size(1))


def attention_mistakes(q, k, v, causal):
    H, Hkv, D = q.size(1), k.size(1), q.size(-1)
    tile = lambda t: t.repeat(1, H // Hkv, 1, 1)          # kv head h % Hkv instead of h // (H / Hkv)
    def manual(scale=D ** -0.5, dim=-1, mask="causal" if causal else None):
        kk, vv = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        s = (q @ kk.transpose(-2, -1)) * scale
        T = q.size(2)
        if mask == "causal": s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        if mask == "anti": s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
        if mask == "zero": s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), 0.0)
        return torch.softmax(s, dim=dim) @ vv
    out = {"no 1/sqrt(D) scaling of the scores": lambda: manual(scale=1.0),
           "scaling by 1/D instead of 1/sqrt(D)": lambda: manual(scale=1 / D),
           "the softmax over the queries (dim -2) instead of the keys (dim -1)": lambda: manual(dim=-2)}
    if causal:
        out |= {"no causal mask at all": lambda: sdpa(q, k, v, False),
                "the mask the wrong way round (query i sees keys i..T-1): use tril for 'may attend', triu(1) for 'masked'": lambda: manual(mask="anti"),
                "masked scores set to 0 instead of -inf (exp(0) = 1 still gives them weight)": lambda: manual(mask="zero")}
    if Hkv != H and Hkv > 1:
        out["kv heads tiled (repeat) instead of grouped (repeat_interleave): query head h must read kv head h // (H // H_kv)"] = \
            lambda: sdpa(q, tile(k), tile(v), causal)
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_sdpa(causal):
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 4, 7, 16, generator=g) for _ in range(3))
    got, want = run_attention(q, k, v, causal=causal), sdpa(q, k, v, causal)
    check_shape(got, want, "run_attention")
    if problem := first_bad(got, want, atol=1e-5, rtol=1e-5):
        found = matching_mistakes(got, attention_mistakes(q, k, v, causal))
        raise AssertionError(f"run_attention(causal={causal}) disagrees with F.scaled_dot_product_attention: {problem}. " + (
            f"Your output matches {found[0]}." if found else
            "softmax(q @ k^T / sqrt(D), over the keys) @ v, with scores of keys after the query set to -inf when causal."))


@pytest.mark.parametrize("n_kv_head", [3, 2, 1])
def test_attention_gqa(n_kv_head):
    "6 query heads sharing 3, 2 or 1 kv heads (1 = multi-query attention)."
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 6, 9, 8, generator=g)
    k, v = torch.randn(2, n_kv_head, 9, 8, generator=g), torch.randn(2, n_kv_head, 9, 8, generator=g)
    got, want = run_attention(q, k, v, causal=True), sdpa(q, k, v, True)
    check_shape(got, want, "run_attention")
    if problem := first_bad(got, want, atol=1e-5, rtol=1e-5):
        found = matching_mistakes(got, attention_mistakes(q, k, v, True))
        raise AssertionError(f"GQA with 6 query heads and {n_kv_head} kv heads: {problem}. " + (
            f"Your output matches {found[0]}." if found else
            f"kv head j serves the {6 // n_kv_head} consecutive query heads j*{6 // n_kv_head} .. "
            f"j*{6 // n_kv_head}+{6 // n_kv_head - 1}: expand k and v with repeat_interleave along the head dim."))


# ---------------------------------------------------------------------------------------------------------------
# The GPT. Oracle: nanochat.gpt.GPT with seeded random weights. `model_forward` below is a second, independent
# implementation from the state dict alone; with its switches it builds the usual mistakes for the diagnosis.

CONFIG = dict(sequence_len=16, vocab_size=96, n_layer=2, n_head=4, n_kv_head=4, n_embd=64)
GQA_CONFIG = dict(CONFIG, n_head=4, n_kv_head=2)
CORRECT = dict(layout="split", sign=-1, embed_norm=True, qk_norm="after", final_norm=True, act="relu2", softcap=15.0,
               kv="interleave", causal=True, tied=False, post_norm=False)


def rms(x):
    "Parameter-free RMSNorm, eps = the dtype's machine epsilon (what F.rms_norm uses by default)."
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps)


def model_forward(sd, cfg, idx, **switches):
    o = CORRECT | switches
    C, H, Hkv, L = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"]
    D, (B, T) = C // H, idx.shape
    rope = lambda t: rope_oracle(t, 10000.0, o["layout"], o["sign"]).float()
    x = sd["transformer.wte.weight"][idx]
    if o["embed_norm"]: x = rms(x)
    for i in range(L):
        w = lambda n: sd[f"transformer.h.{i}.{n}.weight"]
        h = x if o["post_norm"] else rms(x)
        q, k, v = (h @ w("attn.c_q").T).view(B, T, H, D), (h @ w("attn.c_k").T).view(B, T, Hkv, D), (h @ w("attn.c_v").T).view(B, T, Hkv, D)
        if o["qk_norm"] == "before": q, k = rope(rms(q)), rope(rms(k))
        elif o["qk_norm"] == "after": q, k = rms(rope(q)), rms(rope(k))
        else: q, k = rope(q), rope(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        grow = (lambda t: t.repeat_interleave(H // Hkv, 1)) if o["kv"] == "interleave" else (lambda t: t.repeat(1, H // Hkv, 1, 1))
        s = q @ grow(k).transpose(-2, -1) / math.sqrt(D)
        if o["causal"]: s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (torch.softmax(s, -1) @ grow(v)).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w("attn.c_proj").T
        if o["post_norm"]: x = rms(x)
        h = x if o["post_norm"] else rms(x)
        a = h @ w("mlp.c_fc").T
        a = {"relu2": F.relu(a).square(), "relu": F.relu(a), "gelu": F.gelu(a)}[o["act"]]
        x = x + a @ w("mlp.c_proj").T
        if o["post_norm"]: x = rms(x)
    if o["final_norm"]: x = rms(x)
    logits = x @ (sd["transformer.wte.weight"] if o["tied"] else sd["lm_head.weight"]).T
    return o["softcap"] * torch.tanh(logits / o["softcap"]) if o["softcap"] else logits


def gpt_mistakes(sd, cfg, idx):
    m = lambda **s: (lambda: model_forward(sd, cfg, idx, **s))
    out = {"RoPE with interleaved pairs (2j, 2j+1); nanochat pairs channel j with j + D/2": m(layout="interleaved"),
           "RoPE turning the other way; nanochat's pair update is (x1*cos + x2*sin, -x1*sin + x2*cos)": m(sign=+1),
           "no RMSNorm right after the token embedding (x = norm(wte[idx]) before the first block)": m(embed_norm=False),
           "no QK-norm (RMSNorm of q and k over the head dim, after RoPE)": m(qk_norm=None),
           "no RMSNorm before lm_head": m(final_norm=False),
           "a plain ReLU in the MLP; nanochat uses ReLU squared": m(act="relu"),
           "GELU in the MLP; nanochat uses ReLU squared": m(act="gelu"),
           "no logit soft cap; nanochat returns 15 * tanh(logits / 15)": m(softcap=None),
           "a soft cap of 30; nanochat's is 15": m(softcap=30.0),
           "no causal mask in attention": m(causal=False),
           "lm_head tied to wte; nanochat keeps two matrices and uses lm_head.weight for the output": m(tied=True),
           "post-norm blocks (norm after the residual add); nanochat is pre-norm: x = x + attn(norm(x))": m(post_norm=True)}
    if cfg["n_kv_head"] not in (1, cfg["n_head"]):
        out["kv heads tiled (repeat) instead of grouped (repeat_interleave)"] = m(kv="tile")
    return out


def random_weights(cfg, seed):
    """nanochat's GPT, initialised by its own init_weights and then made to matter: the zero-initialised matrices
    (lm_head and every c_proj) get random values, lm_head large enough that many logits reach the soft cap."""
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg))
    model.init_weights()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "lm_head.weight": p.normal_(0, 8 / math.sqrt(p.size(1)))      # logits of std ~8 before the cap
            elif name.endswith("c_proj.weight"): p.normal_(0, 1 / math.sqrt(p.size(1)))
    return model.eval()


def fresh(sd): return {k: v.clone() for k, v in sd.items()}   # so an in-place slip cannot leak into the oracle


def compare_gpt(cfg, idx, seed, what):
    model = random_weights(cfg, seed)
    sd = model.state_dict()
    with torch.no_grad():
        want = model(idx)
        assert torch.allclose(model_forward(sd, cfg, idx), want, atol=ATOL, rtol=RTOL), "grader bug: the two oracles disagree"
        got = run_gpt_forward(fresh(sd), dict(cfg), idx.clone())
    check_shape(got, want, "run_gpt_forward")
    assert got.dtype == torch.float32, f"run_gpt_forward must return float32 logits, got {got.dtype}"
    if problem := first_bad(got.detach(), want, ATOL, RTOL):
        found = matching_mistakes(got.detach(), gpt_mistakes(sd, cfg, idx))
        raise AssertionError(f"{what}: your logits differ from nanochat's GPT: {problem}. " + (
            f"They match a model with {found[0]}." if found else
            "They match none of the usual mistakes. Checklist: x = norm(wte[idx]); per block x += c_proj(attn(norm(x))), "
            "x += mlp(norm(x)) with mlp = c_proj(relu(c_fc(h))**2); q, k: view (B, T, H, D), RoPE (split-half), then "
            "RMSNorm over D (before or after RoPE gives the same numbers: a parameter-free RMSNorm commutes with a "
            "rotation), transpose to (B, H, T, D), causal attention with 1/sqrt(D); heads glued back with transpose + "
            "reshape (not a bare view of (B, H, T, D)); then norm, lm_head, 15*tanh(logits/15) in fp32. nn.Linear "
            "weights are (out, in): y = x @ W.T."))


def test_gpt_head_without_blocks():
    "First the ends of the model: every block's output projections zeroed, so the blocks add nothing."
    cfg = CONFIG
    model = random_weights(cfg, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"): p.zero_()
    idx = torch.randint(0, cfg["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(6))
    sd = model.state_dict()
    with torch.no_grad(): want, got = model(idx), run_gpt_forward(fresh(sd), dict(cfg), idx.clone())
    check_shape(got, want, "run_gpt_forward")
    if problem := first_bad(got.detach(), want, ATOL, RTOL):
        found = matching_mistakes(got.detach(), {k: v for k, v in gpt_mistakes(sd, cfg, idx).items()
                                                 if any(w in k for w in ("soft cap", "tied", "before lm_head"))})
        raise AssertionError(
            f"with all blocks switched off the model is just norm(wte[idx]) -> norm -> lm_head -> soft cap, and your "
            f"logits differ: {problem}. " + (f"They match a model with {found[0]}." if found else
            "Look up rows of transformer.wte.weight (V, C) for the ids, normalise, multiply by lm_head.weight.T "
            "(nn.Linear stores (out, in)), then 15 * tanh(logits / 15)."))


def test_gpt_forward_matches_reference():
    idx = torch.randint(0, CONFIG["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(7))
    compare_gpt(CONFIG, idx, seed=1, what="2 layers, 4 heads of 16 channels")


def test_gpt_forward_gqa():
    idx = torch.randint(0, GQA_CONFIG["vocab_size"], (3, 16), generator=torch.Generator().manual_seed(8))
    compare_gpt(GQA_CONFIG, idx, seed=2, what="GQA: 4 query heads sharing 2 kv heads (c_k, c_v are 32 x 64)")


def test_gpt_is_causal():
    "Changing a token may change the logits at its position and after, never before."
    model = random_weights(CONFIG, seed=3)
    idx = torch.randint(0, CONFIG["vocab_size"], (1, 12), generator=torch.Generator().manual_seed(9))
    idx2 = idx.clone(); idx2[0, 7] = (idx[0, 7] + 1) % CONFIG["vocab_size"]
    sd = model.state_dict()
    a, b = run_gpt_forward(fresh(sd), dict(CONFIG), idx), run_gpt_forward(fresh(sd), dict(CONFIG), idx2)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5), (
        "changing token 7 changed the logits at positions 0..6: the model looks at the future. Mask the attention "
        "scores of keys after the query (causal=True) in every layer.")
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-5), "changing token 7 changed nothing at positions 7.. : is the input used?"


def test_gpt_softcap_in_fp32_under_autocast():
    """Under bf16 autocast (how GPUs train) lm_head produces bf16 logits. Cast them to fp32 BEFORE the soft cap:
    tanh computed in bf16 rounds its output to bf16's 8 bits of precision (7 stored mantissa bits), and near the cap
    neighbouring logits merge."""
    model = random_weights(CONFIG, seed=4)
    idx = torch.randint(0, CONFIG["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(10))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = run_gpt_forward(fresh(model.state_dict()), dict(CONFIG), idx)
    assert got.dtype == torch.float32, f"under bf16 autocast run_gpt_forward must still return float32 logits, got {got.dtype}"
    big = got.detach()[got.detach().abs() > 8]
    assert big.numel() > 100, "grader bug: too few large logits to test the soft cap"
    on_bf16_grid = (big == big.bfloat16().float()).float().mean().item()
    assert on_bf16_grid < 0.5, (
        f"{on_bf16_grid:.0%} of your large logits are exactly bf16 numbers: the soft cap ran in bf16 and rounded them "
        "(0.0625 apart between 8 and 15, so neighbouring logits become equal). Do logits = logits.float() first, then "
        "15 * tanh(logits / 15).")


# ---------------------------------------------------------------------------------------------------------------
# Same --depth, same model: the reference's sizing rule. Oracle: the rule written out here, plus the shapes the
# reference's published models have (d20: 1280 wide, 10 heads of 128).

def depth_oracle(depth):
    C = 64 * depth
    H = max(1, math.ceil(C / 128))
    return None if C % H or (C // H) % 2 else dict(n_layer=depth, n_embd=C, n_head=H, n_kv_head=H)


def depth_mistakes(depth):
    C = 64 * depth
    out = {"the width rounded up to a multiple of 128 (so every head has 128 channels): the reference keeps "
           "n_embd = 64 * depth and lets the head size shrink": dict(n_embd=math.ceil(C / 128) * 128, n_head=max(1, math.ceil(C / 128))),
           "n_head = n_embd // 128 (rounded down); the reference rounds UP: ceil(n_embd / 128), at least 1": dict(n_embd=C, n_head=max(1, C // 128)),
           "n_head = depth // 2; the reference derives heads from the width: ceil(64 * depth / 128)": dict(n_embd=C, n_head=max(1, depth // 2))}
    return {k: v for k, v in out.items() if (v["n_embd"], v["n_head"]) != (C, max(1, math.ceil(C / 128)))}


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 7, 12, 15, 20, 26, 32])
def test_config_from_depth(depth):
    want = depth_oracle(depth)
    got = run_config_from_depth(depth, 65536)
    assert isinstance(got, dict), f"run_config_from_depth must return a dict, got {type(got).__name__}"
    sub = {k: got.get(k) for k in want}
    if sub != want:
        found = [name for name, m in depth_mistakes(depth).items()
                 if (sub["n_embd"], sub["n_head"]) == (m["n_embd"], m["n_head"])]
        raise AssertionError(
            f"depth {depth}: got {sub}, want {want} (head_dim {want['n_embd'] // want['n_head']}). " +
            (f"That is {found[0]}." if found else
             "Width 64 per layer, heads of about 128 channels (how many is fixed by the width), as many kv heads as heads.")
            + " The same --depth must build the same model as the reference, or its checkpoints and runs do not compare.")
    assert got.get("vocab_size") == 65536, "pass vocab_size through into the config"


@pytest.mark.parametrize("depth", [5, 9, 11, 21])
def test_config_from_depth_rejects_uneven_heads(depth):
    C, H = 64 * depth, math.ceil(64 * depth / 128)
    try:
        got = run_config_from_depth(depth, 65536)
    except ValueError as e:
        assert str(depth - 1) in str(e) or str(depth + 1) in str(e), (
            f"depth {depth} is refused, good; now make the message useful: name the nearest depths that work "
            f"(e.g. {depth - 1} or {depth + 1}). Your message: {e}")
        return
    raise AssertionError(
        f"depth {depth}: width {C} cannot be cut into {H} equal heads ({C}/{H} = {C / H:.2f}), and the reference refuses "
        f"this depth. Raise a ValueError naming the nearest depths that work instead of returning {got}.")


# ---------------------------------------------------------------------------------------------------------------
# Same seed, same start. Oracle: a replay of the reference's random draws into fresh tensors, no model involved:
# torch.manual_seed(seed), then one normal_ per weight, in the order nn.Module.apply visits the modules.

INIT_CONFIG = dict(sequence_len=16, vocab_size=96, n_layer=2, n_head=2, n_kv_head=1, n_embd=64)


def init_replay(cfg, seed, order="apply", draw_zeros=True, spectral=True):
    C, H, Hkv, L, V = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"], cfg["vocab_size"]
    D = C // H
    std = lambda o, i: 1 / math.sqrt(i) * (min(1, math.sqrt(o / i)) if spectral else 1)
    draws = [("transformer.wte.weight", (V, C), 1.0)]
    for i in range(L):
        for n, (o, inp) in [("attn.c_q", (H * D, C)), ("attn.c_k", (Hkv * D, C)), ("attn.c_v", (Hkv * D, C)),
                            ("attn.c_proj", (C, C)), ("mlp.c_fc", (4 * C, C)), ("mlp.c_proj", (C, 4 * C))]:
            draws.append((f"transformer.h.{i}.{n}.weight", (o, inp), std(o, inp)))
    draws.append(("lm_head.weight", (V, C), std(V, C)))
    if order == "wte_last": draws = draws[1:] + draws[:1]
    zero = lambda k: k == "lm_head.weight" or k.endswith("c_proj.weight")
    torch.manual_seed(seed)
    out = {}
    for k, shape, s in draws:
        if zero(k) and not draw_zeros: out[k] = torch.zeros(shape); continue
        out[k] = torch.empty(shape).normal_(0, s)
        if zero(k): out[k].zero_()
    return out


def test_init_same_seed_same_start():
    want = init_replay(INIT_CONFIG, seed=42)
    got = run_init_weights(dict(INIT_CONFIG), 42)
    assert isinstance(got, dict) and set(got) == set(want), (
        f"run_init_weights must return the state dict with exactly the reference keys {sorted(want)}; got "
        f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
    for k in ("lm_head.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"):
        assert not got[k].any(), f"{k} must start at zero: every block starts as the identity and the logits at 0"
    bad = [k for k in want if not torch.equal(got[k].float(), want[k])]
    if not bad: return
    mistakes = {"the embedding drawn after the linear layers: nn.Module.apply visits children before parents in "
                "registration order, so transformer.wte comes FIRST": dict(order="wte_last"),
                "the zero-initialised matrices (lm_head, every c_proj) skipped instead of drawn and then zeroed; they "
                "must consume their random numbers like the others": dict(draw_zeros=False),
                "std 1/sqrt(fan_in) for every matrix; the reference multiplies it by min(1, sqrt(fan_out/fan_in))": dict(spectral=False)}
    found = [name for name, kw in mistakes.items()
             if all(torch.equal(got[k].float(), w) for k, w in init_replay(INIT_CONFIG, 42, **kw).items())]
    raise AssertionError(
        f"with torch.manual_seed(42) your initial weights differ from the reference's draws, first at {bad[0]} "
        f"({len(bad)} of {len(want)} tensors differ). " + (f"Your weights match {found[0]}." if found else
        "Seed, build on the meta device, to_empty('cpu'), then one normal_ per weight in nn.Module.apply order "
        "(wte, then per block c_q, c_k, c_v, c_proj, c_fc, c_proj, then lm_head), and zero lm_head and the c_proj's "
        "afterwards. Anything else that draws random numbers in between (e.g. nn.Linear's own init when the model is "
        "built on the CPU) shifts the stream."))


def test_init_statistics():
    "The standard deviations themselves, on a wide model where the sample std is close to sigma."
    cfg = dict(sequence_len=16, vocab_size=512, n_layer=1, n_head=2, n_kv_head=2, n_embd=256)
    got = run_init_weights(dict(cfg), 0)
    for k, want in [("transformer.wte.weight", 1.0), ("transformer.h.0.attn.c_q.weight", 1 / 16),
                    ("transformer.h.0.mlp.c_fc.weight", 1 / 16)]:
        s = got[k].float().std().item()
        assert abs(s - want) < 0.05 * want, (
            f"{k}: std {s:.4f}, want {want:.4f}. wte ~ N(0, 1); a linear layer (out, in) ~ N(0, sigma) with "
            "sigma = 1/sqrt(in) * min(1, sqrt(out/in)) (arXiv:2310.17813).")
