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


# ---------------------------------------------------------------------------------------------------------------
# Stage 2 — the transformer (after lesson L02). Tensors in, tensors out; fp32 on the CPU.


def run_rope(x, base: float = 10000.0):
    """Rotary position embedding of `x` (B, T, H, D) at positions 0 .. T-1, nanochat's layout: channel i is paired
    with channel i + D/2 (split-half), pair i turns by the angle pos * base**(-2i/D), and the pair (x1, x2) becomes
    (x1*cos + x2*sin, -x1*sin + x2*cos). Returns a tensor of x's shape and dtype."""
    if REFERENCE:
        from nanochat.attention import precompute_rotary, apply_rotary
        cos, sin = precompute_rotary(x.size(1), x.size(-1), base=base, device=x.device)
        return apply_rotary(x, cos, sin)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_rope to your rotary embedding")


def run_attention(q, k, v, causal: bool = True):
    """Scaled dot-product attention: q (B, H, T, D), k and v (B, H_kv, T, D) with H a multiple of H_kv (GQA: query
    head h reads kv head h // (H // H_kv)). With `causal`, query i attends to keys 0..i only. Returns (B, H, T, D).
    Write it with matmuls and a softmax: the grader compares it with torch's fused version."""
    if REFERENCE:
        from nanochat.attention import attention
        return attention(q, k, v, causal=causal)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_attention to your attention")


def run_gpt_forward(state_dict: dict, config: dict, idx):
    """Logits (B, T, vocab_size), float32, of the nanochat GPT whose weights are `state_dict` (the reference key
    names: transformer.wte.weight, transformer.h.<i>.attn.c_q/c_k/c_v/c_proj.weight, transformer.h.<i>.mlp.c_fc/
    c_proj.weight, lm_head.weight) for token ids `idx` (B, T) at positions 0 .. T-1. `config` holds sequence_len,
    vocab_size, n_layer, n_head, n_kv_head, n_embd (a checkpoint's meta `model_config`). Build your own model from
    it (or compute the forward pass directly from the tensors). It may be called under torch.autocast."""
    if REFERENCE:
        import torch
        from nanochat.gpt import GPT, GPTConfig
        with torch.device("meta"): model = GPT(GPTConfig(**config))
        model.load_state_dict(state_dict, strict=True, assign=True)
        model.init_rotary()   # the RoPE tables are not in the state dict
        return model(idx)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_gpt_forward to your GPT")


# ---------------------------------------------------------------------------------------------------------------
# Stage 3 — the optimizers (after lesson L03).


def run_newton_schulz(G, steps: int = 5):
    """Approximately orthogonalise the matrix G (rows, cols) with `steps` quintic Newton–Schulz iterations, in
    float32: X = G / (||G||_F + eps), then `steps` times A = X X^T, X = a X + (b A + c A^2) X with
    (a, b, c) = (3.4445, -4.7750, 2.0315). Returns a float32 tensor of G's shape."""
    if REFERENCE:
        import torch
        from nanochat.optim import zeropower_via_newtonschulz
        return zeropower_via_newtonschulz(G, steps=steps, dtype=torch.float32)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_newton_schulz to your Newton–Schulz")


def get_adamw_cls():
    """Your AdamW optimizer class: a torch.optim.Optimizer subclass constructed as
    cls(params_or_groups, lr=..., betas=(b1, b2), eps=..., weight_decay=...), whose step() takes no arguments.
    Decoupled weight decay, bias-corrected moments; read each group's lr at every step (schedules change it)."""
    if REFERENCE:
        from nanochat.optim import AdamW
        return AdamW
    raise NotImplementedError("lessons/capstone/adapters.py: wire get_adamw_cls to your AdamW class")


def run_muon_step(W, grad, momentum_buffer, lr: float, momentum: float, nesterov: bool = True, ns_steps: int = 5):
    """One Muon step on the matrix W (rows, cols), float32 throughout. Returns (new_W, new_momentum_buffer):
    buf = momentum*buf + (1-momentum)*grad; u = (1-momentum)*grad + momentum*buf if nesterov else buf;
    O = Newton–Schulz(u, ns_steps); W = W - lr * sqrt(max(1, rows/cols)) * O. You may update W and the buffer in
    place, but return them."""
    if REFERENCE:
        import torch
        from nanochat.optim import muon_update
        W, buf = W.clone(), momentum_buffer.clone()
        muon_update(W, grad, buf, lr, momentum, nesterov=nesterov, ns_steps=ns_steps, ns_dtype=torch.float32)
        return W, buf
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_muon_step to your Muon update")
