"""Capstone stage — supervised fine-tuning: the collation of a padded batch and the token-normalised masked loss.

    pytest lessons/capstone/test_capstone_sft.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_sft.py   # the course's own implementation

The oracles: nanochat's `collate_sft` (on the ids and mask that the course's `render_conversation` rules give the
segments) and `sft_backward` (the gradient of one optimizer step's loss, normalised by the supervised tokens of the
whole step), on a small nanochat GPT. When your numbers disagree, the grader rebuilds the result with the usual
mistakes built in and names the one that reproduces yours.
"""
import pytest, torch
import torch.nn.functional as F
from grading import first_bad
from adapters import run_sft_collate, run_sft_backward

torch.set_num_threads(1)
PAD = 3
# which segment kinds the assistant must learn to produce (the mask of the course's render_conversation)
SUPERVISED = {"bos": 0, "user": 0, "assistant_start": 0, "text": 1, "python": 1, "output": 0, "assistant_end": 1}


def conversation(seed, turns=1, tool=False):
    "A rendered conversation as segments [(kind, ids)], with random ids >= 10 for the text and fixed ids for specials."
    g = torch.Generator().manual_seed(seed)
    words = lambda n: torch.randint(10, 60, (n,), generator=g).tolist()
    n = lambda: int(torch.randint(1, 6, (1,), generator=g))
    segs = [("bos", [1])]
    for t in range(turns):
        segs += [("user", [4, *words(n()), 5]), ("assistant_start", [6])]
        if tool and t == turns - 1:
            segs += [("text", words(n())), ("python", [7, *words(2), 8]), ("output", [9, *words(1), 2]), ("text", words(n()))]
        else:
            segs += [("text", words(n()))]
        segs += [("assistant_end", [PAD])]
    return segs


def flat(segs, supervised=SUPERVISED):
    ids = [i for _, s in segs for i in s]
    mask = [supervised[k] for k, s in segs for _ in s]
    return ids, mask


def collate(rows, supervised=SUPERVISED, shift=1, pad_target=-1):
    "The reference collation with switches for the diagnosis."
    flats = [flat(r, supervised) for r in rows]
    L = max(len(i) for i, _ in flats)
    x = torch.full((len(rows), L - 1), PAD, dtype=torch.long)
    y = torch.full((len(rows), L - 1), pad_target, dtype=torch.long)
    for b, (ids, mask) in enumerate(flats):
        n = len(ids) - 1
        x[b, :n] = torch.tensor(ids[:-1])
        m = mask[1:] if shift == 1 else mask[:-1]
        y[b, :n] = torch.tensor([t if k else -1 for t, k in zip(ids[1:], m)])
        if pad_target != -1: y[b, n:] = pad_target
    return x, y


def collate_mistakes(rows):
    return {"supervising the user: the user's turn (<|user_start|> text <|user_end|>) is context, never a target — "
            "the model must not learn to write the user's side": lambda: collate(rows, {**SUPERVISED, "user": 1}),
            "supervising tool output: <|output_start|> result <|output_end|> is written by the calculator at inference "
            "time, so it is never a target": lambda: collate(rows, {**SUPERVISED, "output": 1}),
            "an off-by-one mask shift: the target of position t is token t+1, so position t is trained iff mask[t+1] "
            "is 1 (you used mask[t])": lambda: collate(rows, shift=0),
            "padding supervised: padded target positions must be -1 (ignored), not the pad token": lambda: collate(rows, pad_target=PAD),
            "not supervising <|assistant_end|>: learning to stop is part of the answer": lambda: collate(rows, {**SUPERVISED, "assistant_end": 0})}


def matching(got, mistakes):
    out = []
    for name, fn in mistakes.items():
        want = fn()
        if isinstance(got, tuple) and all(torch.equal(torch.as_tensor(a), b) for a, b in zip(got, want)): out.append(name)
        elif torch.is_tensor(got) and torch.is_tensor(want) and got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-7):
            out.append(name)
    return out


ROWS = [conversation(0), conversation(1, tool=True), conversation(2, turns=2), conversation(3, turns=2, tool=True)]


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS[1:2], ROWS], ids=["one-turn", "tool-call", "batch-of-4"])
def test_collate(rows):
    got = run_sft_collate(rows, PAD)
    assert isinstance(got, tuple) and len(got) == 2, "run_sft_collate must return (inputs, targets)"
    x, y = (torch.as_tensor(t) for t in got)
    L = max(len(flat(r)[0]) for r in rows)
    assert tuple(x.shape) == tuple(y.shape) == (len(rows), L - 1), (
        f"inputs and targets must both be (B, L-1) = ({len(rows)}, {L - 1}) with L the longest row ({L} tokens): the last "
        f"token is only a target and the first only an input; got {tuple(x.shape)} and {tuple(y.shape)}")
    from nanochat.sft import collate_sft   # the oracle
    wx, wy = collate_sft([flat(r) for r in rows], PAD)
    if torch.equal(x.long(), wx) and torch.equal(y.long(), wy): return
    if not torch.equal(x.long(), wx):
        pytest.fail(f"inputs differ: they are ids[:-1] of each row, right-padded with pad_id={PAD}. " + first_bad(x, wx, 0, 0))
    names = matching((x.long(), y.long()), collate_mistakes(rows))
    hint = ("your targets match " + " AND ".join(names)) if names else first_bad(y, wy, 0, 0)
    pytest.fail(f"targets differ from the reference: {hint}. Targets are ids[1:] where the NEXT token is one the assistant "
                "writes (its text, its tool calls with <|python_start|>/<|python_end|>, <|assistant_end|>), else -1.")


# ---------------------------------------------------------------------------------------------------------------
# The loss of one optimizer step, accumulated over micro-batches.

def tiny_gpt(seed=0):
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    m = GPT(GPTConfig(sequence_len=64, vocab_size=64, n_layer=1, n_head=2, n_kv_head=2, n_embd=32)); m.init_weights()
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.05 * torch.randn_like(p))
    return m


def grads(m): return torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in m.parameters()])


def loss_variant(batches, how):
    m = tiny_gpt()
    if how == "micro_mean":
        for x, y in batches: (m(x, y) / len(batches)).backward()
    elif how == "sum":
        for x, y in batches: m(x, y, loss_reduction="sum").backward()
    elif how == "all_positions":
        n = sum(y.numel() for _, y in batches)
        for x, y in batches: (m(x, y, loss_reduction="sum") / n).backward()
    elif how == "micro_mean_no_div":
        for x, y in batches: m(x, y).backward()
    return grads(m)


def step_mistakes(batches):
    return {"a per-micro-batch mean (each micro-batch's mean loss, averaged): a token in a micro-batch of short answers "
            "then weighs more than one among long answers; divide the SUM of all token losses by the number of "
            "supervised tokens of the whole step": lambda: loss_variant(batches, "micro_mean"),
            "the summed loss, never divided by the number of supervised tokens": lambda: loss_variant(batches, "sum"),
            "a division by every position (padding and -1 targets included) instead of the supervised ones only":
                lambda: loss_variant(batches, "all_positions"),
            "per-micro-batch means added up without dividing by the number of micro-batches": lambda: loss_variant(batches, "micro_mean_no_div")}


def make_batches(rows_per_micro):
    rows = [conversation(10 + i, turns=1 + i % 2, tool=i % 3 == 0) for i in range(6)]
    from nanochat.sft import collate_sft
    return [collate_sft([flat(r) for r in rows[i:i + rows_per_micro]], PAD) for i in range(0, len(rows), rows_per_micro)]


@pytest.mark.parametrize("rows_per_micro", [6, 2, 1])
def test_step_gradient(rows_per_micro):
    from nanochat.sft import sft_backward   # the oracle
    batches = make_batches(rows_per_micro)
    mine, ref = tiny_gpt(), tiny_gpt()
    value = run_sft_backward(mine, [(x.clone(), y.clone()) for x, y in batches])
    total, n = sft_backward(ref, batches)
    g, w = grads(mine), grads(ref)
    assert torch.isfinite(g).all(), "your gradients contain inf/nan"
    assert g.abs().sum() > 0, "no gradient: call .backward() on each micro-batch's loss (the grader reads the parameters' .grad)"
    if not torch.allclose(g, w, rtol=1e-4, atol=1e-7):
        names = matching(g, step_mistakes(batches))
        hint = ("your gradient matches " + " AND ".join(names)) if names else first_bad(g, w, 1e-7, 1e-4)
        pytest.fail(f"the accumulated gradient with {len(batches)} micro-batch(es) of {rows_per_micro} row(s) differs from the "
                    f"reference: {hint}")
    assert value == pytest.approx(total / n, rel=1e-4), (
        f"run_sft_backward must return the step's loss, sum of token losses / supervised tokens = {total / n:.6f}; got {value}")


def test_batch_composition_does_not_matter():
    "The same 6 conversations, as 1, 3 or 6 micro-batches: the gradient of the step must not change."
    gs = []
    for k in (6, 2, 1):
        m = tiny_gpt()
        run_sft_backward(m, make_batches(k))
        gs.append(grads(m))
    for k, g in zip((2, 1), gs[1:]):
        assert torch.allclose(g, gs[0], rtol=1e-4, atol=1e-7), (
            f"splitting the step into micro-batches of {k} row(s) changed the gradient ({first_bad(g, gs[0], 1e-7, 1e-4)}): "
            "normalise by the supervised tokens of the whole step, not of each micro-batch")
