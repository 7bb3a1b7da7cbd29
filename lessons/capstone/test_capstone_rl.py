"""Capstone stage 8 — the policy-gradient loss of RL on verifiable rewards: which tokens are trained, the
advantages, and the normalisation.

    pytest lessons/capstone/test_capstone_rl.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_rl.py   # the course's own implementation

The oracles are the definitions, written out in float64 loops below (one token at a time), plus autograd: the
gradient of your loss with respect to each log-probability must be −A_i / N on the tokens the policy sampled and
exactly 0 everywhere else. When your numbers disagree, the grader recomputes them with the usual mistakes built in
(no baseline, one mean over the whole batch, a per-row or per-micro-batch mean, the mask not shifted, the prompt or
the tool output trained, the sign flipped, ...) and names the one your numbers match.
"""
import pytest, torch
from grading import first_bad
from adapters import run_rl_targets, run_group_advantages, run_pg_loss

torch.set_num_threads(1)
PAD = 99


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def matching(got, mistakes, atol=1e-6, rtol=1e-5):
    "Names of the known mistakes (name -> function giving that mistake's result) that reproduce `got`."
    out = []
    for name, fn in mistakes.items():
        try: w = fn()
        except (RuntimeError, IndexError, ValueError): continue
        w = torch.as_tensor(w, dtype=torch.float64)
        if w.shape == got.shape and torch.allclose(got.double(), w, atol=atol, rtol=rtol): out.append(name)
    return out


# ---------------------------------------------------------------------------------------------------------------
# 1. Targets: which positions are trained. A row is prompt + generated tokens; mask[j] = 1 iff the policy sampled
# token j (0 on the prompt and on the calculator's forced output). Position t predicts token t+1.

ROWS = [[1, 2, 3, 10, 11, 12, 13, 14],        # prompt 1 2 3, then sampled 10 11, forced tool output 12 13, sampled 14
        [1, 2, 3, 20, 21]]                    # a shorter row: right-padded
MASKS = [[0, 0, 0, 1, 1, 0, 0, 1],
         [0, 0, 0, 1, 1]]


def targets_oracle(rows, masks, pad):
    T = max(len(r) for r in rows)
    ids = [r + [pad] * (T - len(r)) for r in rows]
    m = [k + [0] * (T - len(k)) for k in masks]
    inputs = [r[:-1] for r in ids]
    targets = [[ids[i][t + 1] if m[i][t + 1] else -1 for t in range(T - 1)] for i in range(len(rows))]
    return torch.tensor(inputs), torch.tensor(targets)


def targets_mistakes(rows, masks, pad):
    T = max(len(r) for r in rows)
    ids = [r + [pad] * (T - len(r)) for r in rows]
    m = [k + [0] * (T - len(k)) for k in masks]
    def tg(keep): return torch.tensor([[ids[i][t + 1] if keep(i, t) else -1 for t in range(T - 1)] for i in range(len(rows))])
    return {"the mask not shifted: position t is trained when token t (the input) was sampled; it must be token t+1, "
            "the one position t predicts": lambda: tg(lambda i, t: m[i][t]),
            "the tool output trained: the calculator's forced tokens (mask 0) are not the policy's choice": lambda:
                tg(lambda i, t: t + 1 < len(rows[i]) and t + 1 >= 3),
            "the prompt trained too (only generated tokens the policy sampled are)": lambda: tg(lambda i, t: t + 1 < len(rows[i])),
            "the padding trained: pad positions must get target -1": lambda: tg(lambda i, t: m[i][t + 1] or t + 1 >= len(rows[i]))}


def test_targets():
    want_in, want_tg = targets_oracle(ROWS, MASKS, PAD)
    got = run_rl_targets(ROWS, MASKS, PAD)
    assert isinstance(got, tuple) and len(got) == 2, "run_rl_targets must return (inputs, targets)"
    inputs, targets = (torch.as_tensor(x) for x in got)
    assert tuple(inputs.shape) == tuple(want_in.shape), (
        f"inputs should have shape {tuple(want_in.shape)} (rows, longest row − 1), got {tuple(inputs.shape)}: pad every "
        "row to the longest, then inputs = ids[:, :-1] and targets = ids[:, 1:]")
    assert torch.equal(inputs.long(), want_in), f"inputs: want {want_in.tolist()}, got {inputs.tolist()} (pad with {PAD}, on the right)"
    if not torch.equal(targets.long(), want_tg):
        found = matching(targets.double(), targets_mistakes(ROWS, MASKS, PAD), atol=0, rtol=0)
        raise AssertionError(f"targets: want {want_tg.tolist()}, got {targets.tolist()}. " + (
            f"Yours match {found[0]}." if found else
            "targets[i, t] = ids[i, t+1] if mask[i][t+1] == 1 else -1 (-1 is ignored by the cross-entropy)."))


# ---------------------------------------------------------------------------------------------------------------
# 2. Advantages: rows come in consecutive groups of `group_size` samples of the same question.

REWARDS = torch.tensor([1., 0, 0, 0,   1, 1, 0, 1,   0, 0, 0, 0], dtype=torch.float64)   # 3 questions x 4 samples


def adv_oracle(r, n, std):
    out = []
    for g in range(0, len(r), n):
        grp = [float(x) for x in r[g:g + n]]
        mean = sum(grp) / n
        sd = (sum((x - mean) ** 2 for x in grp) / n) ** 0.5
        out += [(x - mean) / (sd + 1e-6) if std else x - mean for x in grp]
    return torch.tensor(out, dtype=torch.float64)


def adv_mistakes(r, n, std):
    grp = r.view(-1, n)
    return {"no baseline: the advantage is the reward itself; subtract the group's mean reward": lambda: r.clone(),
            "one mean over the whole batch; the baseline is the mean of each question's own group": lambda: r - r.mean(),
            "the std not applied (std_adv=True divides by the group's std + 1e-6)": lambda: adv_oracle(r, n, False),
            "divided by the std when std_adv=False (the reference only subtracts the mean)": lambda: adv_oracle(r, n, True),
            "the sample std (n − 1); use the population std (unbiased=False) + 1e-6": lambda:
                ((grp - grp.mean(1, keepdim=True)) / (grp.std(1, keepdim=True) + 1e-6)).flatten(),
            "the groups taken as strided (row i in group i % num_groups); they are consecutive blocks of group_size rows": lambda:
                (r.view(n, -1) - r.view(n, -1).mean(0, keepdim=True)).flatten()}


@pytest.mark.parametrize("std", [False, True])
def test_group_advantages(std):
    want = adv_oracle(REWARDS, 4, std)
    got = torch.as_tensor(run_group_advantages(REWARDS.clone(), 4, std)).double()
    assert got.shape == want.shape, f"run_group_advantages must return one advantage per row, shape {tuple(want.shape)}"
    assert torch.isfinite(got).all(), (
        "NaN or inf advantages: the last group's rewards are all 0, so its std is 0 — add 1e-6 to the std before "
        "dividing (0 / 1e-6 = 0: a group with nothing to compare teaches nothing, and must not break the step)")
    if problem := first_bad(got, want, atol=1e-6, rtol=1e-5):
        found = matching(got, adv_mistakes(REWARDS, 4, std))
        raise AssertionError(f"advantages (std_adv={std}) for rewards {REWARDS.tolist()} in groups of 4: {problem}. " + (
            f"Yours match {found[0]}." if found else "A_i = r_i − mean(r over i's group)" + (", then / (std + 1e-6)" if std else "")))


def test_group_advantages_sum_to_zero():
    got = torch.as_tensor(run_group_advantages(REWARDS.clone(), 4, False)).double().view(3, 4)
    assert torch.allclose(got.sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-9), (
        f"each group's advantages must sum to 0 (successes pushed up exactly as much as failures are pushed down); "
        f"yours sum to {got.sum(1).tolist()}")


# ---------------------------------------------------------------------------------------------------------------
# 3. The loss of one micro-batch: −Σ_i Σ_t A_i · logp[i, t] over trained positions (targets != -1), divided by
# num_tokens = the number of trained positions in the WHOLE step (all micro-batches, all ranks).

def loss_case(seed=0):
    logp = -randn(3, 6, seed=seed).abs()
    targets = torch.tensor([[-1, -1, 5, 6, -1, 7], [-1, 4, 4, -1, -1, -1], [-1, -1, -1, 8, 9, 9]])
    adv = torch.tensor([0.5, -0.25, -0.25], dtype=torch.float64)
    return logp, targets, adv


def loss_oracle(logp, targets, adv, n):
    s = 0.0
    for i in range(logp.size(0)):
        for t in range(logp.size(1)):
            if targets[i, t] != -1: s += float(adv[i]) * float(logp[i, t])
    return torch.tensor(-s / n, dtype=torch.float64)


def loss_mistakes(logp, targets, adv, n):
    valid = (targets != -1).double()
    A = adv[:, None]
    return {"the sign flipped: the loss is MINUS the objective (the optimizer minimises; we want the objective up)": lambda:
                (logp * A * valid).sum() / n,
            "every position trained: positions with target -1 (prompt, tool output, padding) must not count": lambda:
                -(logp * A).sum() / n,
            "a mean per row, then over rows (GRPO's original): long answers get less weight per token": lambda:
                -((logp * A * valid).sum(1) / valid.sum(1)).mean(),
            "normalised by this micro-batch's token count; use num_tokens, the count of the whole step (all micro-batches "
            "and ranks), so any split of the rows gives the same gradient": lambda: -(logp * A * valid).sum() / valid.sum(),
            "normalised by the number of rows": lambda: -(logp * A * valid).sum() / logp.size(0),
            "no normalisation (a plain sum)": lambda: -(logp * A * valid).sum(),
            "the mean over every position including the masked ones": lambda: -(logp * A * valid).mean()}


def test_pg_loss_value():
    logp, targets, adv = loss_case()
    n = 40   # the step has more tokens than this micro-batch
    want = loss_oracle(logp, targets, adv, n)
    got = torch.as_tensor(run_pg_loss(logp.clone(), targets.clone(), adv.clone(), n)).double()
    assert got.numel() == 1, f"run_pg_loss must return a scalar, got shape {tuple(got.shape)}"
    got = got.reshape(())
    if problem := first_bad(got.reshape(1), want.reshape(1), atol=1e-9, rtol=1e-7):
        found = matching(got, loss_mistakes(logp, targets, adv, n), atol=1e-9, rtol=1e-7)
        raise AssertionError(f"loss: {problem}. " + (f"Yours is {found[0]}." if found else
                             "loss = −Σ_i Σ_t A_i · logp[i, t] · [targets[i, t] != -1] / num_tokens"))


def test_pg_loss_gradient():
    "d loss / d logp[i, t] = −A_i / N on trained positions, exactly 0 elsewhere; a zero-advantage row gets no gradient."
    logp, targets, adv = loss_case(1)
    adv[2] = 0.0
    x = logp.clone().requires_grad_(True)
    run_pg_loss(x, targets, adv, 40).backward()
    assert x.grad is not None, "run_pg_loss must be differentiable with respect to logp (no .item(), no detach)"
    want = torch.where(targets != -1, -adv[:, None] / 40, torch.zeros_like(logp))
    if problem := first_bad(x.grad, want, atol=1e-12, rtol=1e-9):
        leaked = ((targets == -1) & (x.grad != 0)).nonzero().tolist()
        raise AssertionError(f"gradient with respect to logp: {problem}. " + (
            f"Positions {leaked[:4]} have target -1 but get a gradient: mask them out." if leaked else
            "It must be −A_i / num_tokens where targets != -1, and 0 elsewhere."))


def test_split_invariance():
    "Two micro-batches, each normalised by the step's count, give the loss and gradient of the whole batch."
    logp, targets, adv = loss_case(2)
    n = int((targets != -1).sum())
    whole = torch.as_tensor(run_pg_loss(logp.clone(), targets, adv, n)).double()
    parts = sum(torch.as_tensor(run_pg_loss(logp[s].clone(), targets[s], adv[s], n)).double() for s in (slice(0, 1), slice(1, 3)))
    assert torch.allclose(whole, parts, atol=1e-12), (
        f"the batch split into rows [0] and [1, 2] gives {float(parts):.6f}, the whole batch {float(whole):.6f}: the "
        "micro-batches must each divide by the SAME num_tokens (the whole step's), never by their own count")
