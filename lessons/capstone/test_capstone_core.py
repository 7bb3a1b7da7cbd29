"""Capstone stage 9 — CORE's multiple-choice scorer.

    pytest lessons/capstone/test_capstone_core.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_core.py   # the course's own implementation

`run_score_choices(model, bos_id, context, choices)` returns, per choice, the mean cross-entropy (nats per token)
of the choice's tokens when they follow BOS + context. The oracle is written here from first principles: one
sequence at a time, a log-softmax at each position, the log-probability of each choice token read at the position
just before it. The model is a tiny nanochat GPT with random weights (a fresh model's zero head would give every
choice the same score). When your numbers disagree, the grader recomputes the scores with the usual mistakes built
in and names the one your numbers match.
"""
import math
import pytest, torch
from adapters import run_score_choices

torch.set_num_threads(1)
BOS = 0
V = 96


@pytest.fixture(scope="module")
def model():
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(0)
    m = GPT(GPTConfig(sequence_len=64, vocab_size=V, n_layer=2, n_head=2, n_kv_head=1, n_embd=32))
    m.init_weights()
    for p in m.parameters(): torch.nn.init.normal_(p, std=0.3)   # sharp, varied predictions
    return m.eval()


def ids(seed, n):
    return torch.randint(1, V, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# (context, choices): choices of different lengths (so a sum and a mean disagree), some sharing first tokens
CASES = [
    (ids(1, 7), [ids(2, 1), ids(3, 4), ids(4, 2)]),
    (ids(5, 12), [ids(6, 3), ids(7, 3), ids(8, 6), ids(9, 1)]),
    (ids(10, 3), [ids(11, 5), ids(11, 2)]),                     # one choice is a prefix of the other
    (ids(12, 20), [ids(13, 2), ids(14, 8)]),
]


@torch.no_grad()
def token_logprobs(model, seq):
    "log p(seq[t] | seq[:t]) for t = 1 .. len-1, one sequence, float64."
    logits = model(torch.tensor([seq])).double()[0]
    lp = torch.log_softmax(logits, -1)
    return [lp[t - 1, seq[t]].item() for t in range(1, len(seq))]


def variant(model, context, choices, bos=True, reduce="mean", include_context=False, shift=1):
    "The scores under a set of choices; the defaults are the correct scorer."
    out = []
    for ch in choices:
        seq = ([BOS] if bos else []) + context + ch
        logits = model(torch.tensor([seq])).double()[0]
        lp = torch.log_softmax(logits, -1)
        start = len(seq) - len(ch)
        first = 1 if include_context else start
        # token t is predicted at position t - shift (shift 1 is right; 0 reads the position of the token itself)
        nll = [-lp[t - shift, seq[t]].item() for t in range(max(first, shift), len(seq))]
        out.append(sum(nll) if reduce == "sum" else sum(nll) / len(nll))
    return out


MISTAKES = {
    "the SUM of the choice's token losses instead of their mean (a longer choice pays for every extra token, so "
    "short answers win; CORE normalises by the number of continuation tokens)": dict(reduce="sum"),
    "the context tokens scored too (the mean runs over context + choice; only the choice's tokens are the "
    "continuation: they start where the sequences stop sharing their prefix)": dict(include_context=True),
    "an off-by-one on the continuation span: the logits at the position OF each choice token were read, but the "
    "prediction for token t is made at position t - 1 (the logits are shifted by one against the tokens)": dict(shift=0),
    "no BOS in front of the context (every sequence starts with BOS: the model never saw a document without it, so "
    "its predictions without it are not the ones it was trained to make)": dict(bos=False),
    "no BOS, and the sum instead of the mean": dict(bos=False, reduce="sum"),
}


def diagnose(model, context, choices, got):
    names = []
    for name, kw in MISTAKES.items():
        with torch.no_grad(): w = variant(model, context, choices, **kw)
        if len(w) == len(got) and all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(got, w)): names.append(name)
    return names


@torch.no_grad()
def oracle(model, context, choices):
    out = []
    for ch in choices:
        lps = token_logprobs(model, [BOS] + context + ch)
        out.append(-sum(lps[-len(ch):]) / len(ch))
    return out


def test_oracle_agrees_with_itself(model):
    for context, choices in CASES:
        assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(oracle(model, context, choices), variant(model, context, choices))), \
            "grader bug: the two oracles disagree"


@pytest.mark.parametrize("case", range(len(CASES)))
def test_scores(model, case):
    context, choices = CASES[case]
    got = run_score_choices(model, BOS, list(context), [list(c) for c in choices])
    assert isinstance(got, (list, tuple)) and len(got) == len(choices), \
        f"run_score_choices must return one float per choice ({len(choices)}), got {got!r}"
    got = [float(g) for g in got]
    want = oracle(model, context, choices)
    if all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(got, want)): return
    names = diagnose(model, context, choices, got)
    hint = ("Your scores match " + "; or ".join(names) + ".") if names else \
        "They match none of the usual mistakes (sum vs mean, context scored, off-by-one span, missing BOS): print the " \
        "token ids of each sequence you build and the positions you read."
    pytest.fail(f"case {case}: scores {[round(g, 5) for g in got]}, expected {[round(w, 5) for w in want]} "
                f"(mean cross-entropy in nats of each choice's tokens after BOS + context). {hint}")


def test_prediction_is_length_normalised(model):
    "The choice CORE predicts is the argmin of the scores; on these cases the sum would pick differently."
    picks_mean, picks_sum = [], []
    for context, choices in CASES:
        got = [float(g) for g in run_score_choices(model, BOS, list(context), [list(c) for c in choices])]
        picks_mean.append(min(range(len(got)), key=got.__getitem__))
        s = variant(model, context, choices, reduce="sum")
        picks_sum.append(min(range(len(s)), key=s.__getitem__))
    want = [min(range(len(o)), key=o.__getitem__) for o in (oracle(model, c, ch) for c, ch in CASES)]
    assert picks_sum != want, "grader bug: the cases do not separate the sum from the mean"
    assert picks_mean == want, (
        f"the choices your scores rank best are {picks_mean}, CORE's are {want}"
        + (" — exactly what SUMMED losses pick: divide each choice's loss by its number of tokens" if picks_mean == picks_sum else ""))


def test_batch_independence(model):
    "A choice's score must not depend on the other choices it is scored with (padding, batching)."
    context, choices = CASES[1]
    together = [float(g) for g in run_score_choices(model, BOS, list(context), [list(c) for c in choices])]
    alone = [float(run_score_choices(model, BOS, list(context), [list(c)])[0]) for c in choices]
    assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(together, alone)), (
        f"scored together {together}, one at a time {alone}: when you batch choices of different lengths, pad on the "
        "RIGHT and read only each choice's own positions (left padding shifts the positions; padding inside the span "
        "adds padded tokens to the mean)")
