"""Capstone stage 4 — pretraining: the loader's exact resume, and the training step.

    pytest lessons/capstone/test_capstone_train.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_train.py   # the course's own implementation

The oracles are written out in this file, independently of nanochat: for the loader, a plain-Python packer (every
document with BOS in front, one stream, cycled; batch k is the stream's tokens k·B·T .. k·B·T + B·T); for the training
step, the gradient of one big batch computed on a copy of the model, and the LR / momentum schedules of lesson L04
written as formulas. When your numbers disagree, the grader rebuilds the usual mistakes and names the one your
numbers match.
"""
import copy, json, math
import pytest, torch
import torch.nn.functional as F
from adapters import run_packed_loader, run_train_steps

torch.set_num_threads(1)
BOS = 0


# ---------------------------------------------------------------------------------------------------------------
# The loader. Documents are lists of token ids (1..49); BOS is 0 and appears nowhere else.

def make_docs(n=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 50, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


def stream(docs, n_tokens, bos_front=True, with_bos=True):
    "The oracle's token stream (cycled over epochs), or one of the usual mistakes' streams."
    one = [t for d in docs for t in (([BOS] if with_bos else []) + d if bos_front else d + [BOS])]
    return (one * (n_tokens // len(one) + 2))[:n_tokens]


def oracle_batches(docs, B, T, n, step=None, bos_front=True, with_bos=True, start=0):
    "Batches start..start+n-1 of the oracle: batch k is stream[k*step : k*step + B*T + 1] (step = B*T tokens)."
    step = B * T if step is None else step
    s = torch.tensor(stream(docs, (start + n) * step + B * T + 1, bos_front, with_bos))
    out = []
    for k in range(start, start + n):
        w = s[k * step:k * step + B * T + 1]
        out.append((w[:-1].view(B, T), w[1:].view(B, T)))
    return out


def take(gen, n):
    out = []
    for _ in range(n):
        try: out.append(next(gen))
        except StopIteration:
            raise AssertionError(f"your loader stopped after {len(out)} batches: it must go round the documents again "
                                 "(the next epoch) instead of ending; the first reference loader hung here instead "
                                 "because it never reset its file index") from None
    return out


def loader_mistake(got, docs, B, T):
    "Name the usual mistake that the inputs of the first batches `got` (a list of (B, T) tensors) match."
    n = len(got)
    candidates = {
        "B*T+1 tokens consumed per batch: the last target must also be the next batch's first input, so consume "
        "only B*T (otherwise one token per batch is never an input)": oracle_batches(docs, B, T, n, step=B * T + 1),
        "no BOS token in front of each document": oracle_batches(docs, B, T, n, with_bos=False),
        "the BOS token after each document instead of in front of it": oracle_batches(docs, B, T, n, bos_front=False),
    }
    for name, want in candidates.items():
        if all(torch.equal(g, x) for g, (x, _) in zip(got, want)): return f"Your batches match {name}."
    return ("The stream is: for each document, BOS then its tokens; all documents in order, then again from the first; "
            "batch k is tokens k*B*T .. k*B*T + B*T of it (inputs the first B*T, targets the last B*T).")


@pytest.mark.parametrize("B,T", [(2, 8), (3, 5), (1, 64)])
def test_loader_batches_are_the_stream(B, T):
    docs = make_docs()
    got = take(run_packed_loader(docs, BOS, B, T), 30)
    want = oracle_batches(docs, B, T, 30)
    for k, ((x, y, state), (wx, wy)) in enumerate(zip(got, want)):
        assert torch.is_tensor(x) and tuple(x.shape) == (B, T) and tuple(y.shape) == (B, T), (
            f"batch {k}: inputs and targets must be (B, T) = ({B}, {T}) tensors, got {getattr(x, 'shape', type(x))}")
        assert x.dtype == torch.int64 and y.dtype == torch.int64, f"batch {k}: use int64 token ids, got {x.dtype}"
        assert torch.equal(y[:, :-1], x[:, 1:]), f"batch {k}: within a row, the targets are the inputs shifted left by one"
        if not torch.equal(x, wx):
            raise AssertionError(f"batch {k} (B={B}, T={T}) differs from the stream. " +
                                 loader_mistake([g[0] for g in got[:6]], docs, B, T))
        assert torch.equal(y, wy), (f"batch {k}: inputs right, targets wrong: the target of the last position of a row is "
                                    "the first input of the next row (and of the last row: the token after the batch)")


def test_state_is_a_small_position():
    docs = make_docs()
    for x, y, state in take(run_packed_loader(docs, BOS, 2, 8), 200): pass
    try: text = json.dumps(state)
    except TypeError as e:
        raise AssertionError(f"the state must be JSON-serialisable (it goes into the checkpoint's meta file): {e}") from None
    assert len(text) < 500, (
        f"after 200 batches your state is {len(text)} characters of JSON: it should be a position in the stream (which "
        "document, which token, which epoch), a few integers — not the buffered tokens or the history of batches")


@pytest.mark.parametrize("B,T", [(2, 8), (3, 5)])
def test_resume_is_exact(B, T):
    "Resume from the state of batch k: the next batches are k+1, k+2, ... of the uninterrupted run."
    docs = make_docs()
    run = take(run_packed_loader(docs, BOS, B, T), 60)
    epoch_tokens = sum(len(d) + 1 for d in docs)
    wrap = epoch_tokens // (B * T)   # the batch during which the stream goes round to the first document again
    for k in sorted({0, 1, 7, wrap - 1, wrap, wrap + 1, 40}):
        state = json.loads(json.dumps(run[k][2]))   # as stored in a checkpoint and read back
        resumed = take(run_packed_loader(docs, BOS, B, T, resume_state=state), 5)
        for i, ((x, y, _), (wx, wy, _)) in enumerate(zip(resumed, run[k + 1:k + 6])):
            if torch.equal(x, wx) and torch.equal(y, wy): continue
            if i == 0 and torch.equal(x, run[k][0]):
                raise AssertionError(
                    f"resumed from the state yielded with batch {k}, your loader gave batch {k} again: the state must be "
                    "the position of the NEXT batch (after consuming this one), or a resumed run trains twice on it")
            starts = {j for j in range(k + 2, k + 8) if torch.equal(x, run[j][0])} if i == 0 else set()
            hint = (f"it continued with batch {min(starts)}: batches were skipped" if starts else
                    "the first token of the resumed stream should be the last target of batch k. A resume that only "
                    "remembers the document (and skips to the next one, or restarts the current one) drops or repeats "
                    "tokens: remember the token offset inside the document too")
            raise AssertionError(f"resumed from the state of batch {k} (B={B}, T={T}; one epoch is {epoch_tokens} tokens, "
                                 f"it wraps around during batch {wrap}): resumed batch {i} differs from batch {k + 1 + i} "
                                 f"of the uninterrupted run; {hint}.")


def test_no_document_dropped_or_repeated():
    "Over exactly two epochs, every document appears exactly twice, whole, in order."
    docs = make_docs(n=17, seed=3)
    B, T = 2, 4
    epoch = sum(len(d) + 1 for d in docs)
    n = 2 * epoch // (B * T) + 1
    first = take(run_packed_loader(docs, BOS, B, T), 5)
    rest = take(run_packed_loader(docs, BOS, B, T, resume_state=first[4][2]), n - 5)
    toks = torch.cat([x.flatten() for x, _, _ in first + rest]).tolist()[:2 * epoch]
    got_docs, cur = [], None
    for t in toks:
        if t == BOS:
            if cur is not None: got_docs.append(cur)
            cur = []
        elif cur is not None: cur.append(t)
    got_docs.append(cur)
    assert got_docs == docs + docs, (
        f"across a resume after 5 batches and two epochs, the documents seen differ from the documents twice in order "
        f"(got {len(got_docs)} documents, want {2 * len(docs)}): a resume must neither drop nor repeat any token")


# ---------------------------------------------------------------------------------------------------------------
# The training step. A tiny language model, a fake optimizer that records what the step hands it, oracles written
# out below.

V, C = 32, 16


class TinyLM(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Parameter(torch.randn(V, C, generator=g) * 0.5)
        self.out = torch.nn.Parameter(torch.randn(V, C, generator=g) * 0.5)

    def forward(self, x, y):
        return F.cross_entropy((self.emb[x] @ self.out.T).view(-1, V), y.reshape(-1))


class Recorder(torch.optim.Optimizer):
    """Plain SGD that records, at every step(), a copy of every parameter (before the update) and gradient, every group's lr and the momentum of the
    groups that have one. Group 0 is an "AdamW-like" group (no momentum key), group 1 a "Muon-like" one."""
    def __init__(self, model, lrs=(0.5, 0.2)):
        super().__init__([dict(params=[model.emb], lr=lrs[0], initial_lr=lrs[0]),
                          dict(params=[model.out], lr=lrs[1], initial_lr=lrs[1], momentum=0.95)], {})
        self.log = []

    @torch.no_grad()
    def step(self):
        self.log.append(dict(params=[p.detach().clone() for g in self.param_groups for p in g["params"]],
                             grads=[None if p.grad is None else p.grad.clone() for g in self.param_groups for p in g["params"]],
                             lrs=[g["lr"] for g in self.param_groups], momentum=self.param_groups[1]["momentum"]))
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None: p.add_(p.grad, alpha=-g["lr"])


def oracle_lrm(it, n, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0):
    "Lesson L04's LR multiplier: warm-up (it+1)/warmup, then 1, then linear to final_lr_frac at step n."
    warmup, warmdown = round(warmup_ratio * n), round(warmdown_ratio * n)
    if it < warmup: return (it + 1) / warmup
    if it <= n - warmdown: return 1.0
    progress = (n - it) / warmdown
    return progress + (1 - progress) * final_lr_frac


def oracle_momentum(it): return 0.85 + 0.10 * min(it / 300, 1.0)


def micro_batches_for(step, grad_accum, rows=2, T=6):
    "The micro-batches of a step: seeded by the step, so a resumed run sees the same data."
    g = torch.Generator().manual_seed(100 + step)
    tok = torch.randint(0, V, (grad_accum * rows, T + 1), generator=g)
    return [(tok[i * rows:(i + 1) * rows, :-1], tok[i * rows:(i + 1) * rows, 1:]) for i in range(grad_accum)]


def feed(start, steps, grad_accum):
    for s in range(start, start + steps): yield from micro_batches_for(s, grad_accum)


def big_batch_grads(model, mbs):
    "The oracle: gradients of the mean loss over all the step's rows at once (same rows per micro-batch)."
    m = copy.deepcopy(model)
    x, y = torch.cat([x for x, _ in mbs]), torch.cat([y for _, y in mbs])
    m(x, y).backward()
    return [m.emb.grad, m.out.grad]


def at(params):
    "A TinyLM holding the given (emb, out) weights."
    m = TinyLM()
    with torch.no_grad():
        for p, v in zip((m.emb, m.out), params): p.copy_(v)
    return m


def test_accumulated_gradients_equal_one_big_batch():
    model, grad_accum = TinyLM(), 4
    opt = Recorder(model)
    losses = run_train_steps(model, [opt], feed(0, 3, grad_accum), grad_accum, 0, 3, 10)
    assert len(opt.log) == 3, f"3 steps must call each optimizer's step() 3 times, got {len(opt.log)}"
    assert isinstance(losses, (list, tuple)) and len(losses) == 3, "run_train_steps must return the 3 steps' mean losses"
    for step, rec in enumerate(opt.log):
        mbs = micro_batches_for(step, grad_accum)
        want = big_batch_grads(at(rec["params"]), mbs)          # at the weights the step's gradients were taken at
        for i, (name, got, w) in enumerate(zip(("emb", "out"), rec["grads"], want)):
            assert got is not None, f"step {step}: {name} had no gradient when the optimizer stepped (zero_grad before step()?)"
            if torch.allclose(got, w, atol=1e-6, rtol=1e-5): continue
            last = at(rec["params"])
            (last(*mbs[-1]) / grad_accum).backward()
            if torch.allclose(got, (last.emb.grad, last.out.grad)[i], atol=1e-6, rtol=1e-5): raise AssertionError(
                f"step {step}: the {name} gradient is only the LAST micro-batch's: the gradients were zeroed inside the "
                "accumulation loop. Zero them once per step, after the optimizers stepped")
            if torch.allclose(got, w * grad_accum, atol=1e-5, rtol=1e-4): raise AssertionError(
                f"step {step}: the {name} gradient is {grad_accum}x the big batch's: divide each micro-batch's loss by "
                f"grad_accum ({grad_accum}) before backward(), so the summed gradients average")
            if step > 0 and torch.allclose(got, big_batch_grads(at(rec["params"]), micro_batches_for(step - 1, grad_accum))[i], atol=1e-6):
                raise AssertionError(f"step {step} used step {step - 1}'s micro-batches again: take the next grad_accum "
                                     "micro-batches from the iterator at every step")
            raise AssertionError(f"step {step}: the {name} gradient differs from the gradient of the mean loss over all "
                                 f"{grad_accum} micro-batches at once (max |diff| {(got - w).abs().max():.2e}). Per "
                                 "micro-batch: (model(x, y) / grad_accum).backward(); no zero_grad between micro-batches")
    m = TinyLM()
    want_loss = sum(m(*mb).item() for mb in micro_batches_for(0, grad_accum)) / grad_accum
    assert abs(losses[0] - want_loss) < 1e-5, (
        f"step 0's returned loss {losses[0]:.6f} should be the mean of its micro-batches' losses {want_loss:.6f}" + (
        f" — yours is their sum (x{grad_accum})" if abs(losses[0] - grad_accum * want_loss) < 1e-4 else ""))


@pytest.mark.parametrize("n,warmup,warmdown,final", [(20, 0.0, 0.2, 0.0), (10, 0.3, 0.5, 0.1), (7, 0.0, 0.3, 0.0)])
def test_schedules_per_step(n, warmup, warmdown, final):
    from nanochat.optim import get_lr_multiplier
    assert all(abs(oracle_lrm(i, n, warmup, warmdown, final) - get_lr_multiplier(i, n, warmup, warmdown, final)) < 1e-12
               for i in range(n)), "grader bug: the two LR oracles disagree"
    model = TinyLM()
    opt = Recorder(model)
    run_train_steps(model, [opt], feed(0, n, 1), 1, 0, n, n, warmup, warmdown, final)
    got = [r["lrs"][0] / 0.5 for r in opt.log]
    want = [oracle_lrm(i, n, warmup, warmdown, final) for i in range(n)]
    assert len(got) == n, f"{n} steps must call step() {n} times, got {len(got)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if abs(g - w) < 1e-9: continue
        if abs(opt.log[i]["lrs"][1] / 0.2 - g) > 1e-9: raise AssertionError(
            f"step {i}: the two groups got different multipliers ({g:.4f} and {opt.log[i]['lrs'][1] / 0.2:.4f}): every "
            "group's lr is its own initial_lr times the SAME multiplier")
        known = {
            "the LR set after the optimizers stepped (each step used the previous step's LR): set it before step()":
                [1.0] + want[:-1],
            "a multiplier compounded on the current lr (lr *= lrm): always start from group['initial_lr']":
                list(torch.tensor(want).cumprod(0).tolist()),
            "the warm-up without the +1: it is (it + 1) / warmup_steps, so step 0 already moves":
                [it / round(warmup * n) if it < round(warmup * n) else w_ for it, w_ in enumerate(want)],
            "a warm-down that reaches final_lr_frac at the last step (n - 1): it reaches it at step n, one past the "
            "last step, so progress = (n - it) / warmdown_steps and the last step still trains":
                [w_ if it <= n - round(warmdown * n) or it < round(warmup * n) else
                 ((n - 1 - it) / round(warmdown * n)) + (1 - (n - 1 - it) / round(warmdown * n)) * final
                 for it, w_ in enumerate(want)],
            "progress measured from the start of the run instead of the end: progress = (n - it) / warmdown_steps":
                [w_ if it <= n - round(warmdown * n) or it < round(warmup * n) else
                 (it / n) + (1 - it / n) * final for it, w_ in enumerate(want)],
        }
        found = [name for name, seq in known.items() if all(abs(a - b) < 1e-9 for a, b in zip(got, seq))]
        raise AssertionError(
            f"run of {n} steps, warmup_ratio {warmup}, warmdown_ratio {warmdown}, final_lr_frac {final}: at step {i} "
            f"the LR multiplier is {g:.4f}, want {w:.4f}. " + (f"Your multipliers match {found[0]}." if found else
            f"Want, per step: {[round(x, 4) for x in want]}; yours: {[round(x, 4) for x in got]}."))


def test_momentum_schedule_and_resume():
    "Muon's momentum per step (0.85 -> 0.95 over 300 steps), on the groups that have it; a resumed run continues it."
    model = TinyLM()
    opt = Recorder(model)
    run_train_steps(model, [opt], feed(0, 4, 1), 1, 0, 4, 1000)
    run_train_steps(model, [opt], feed(298, 4, 1), 1, 298, 4, 1000)    # "resumed" at step 298: the schedule continues
    got = [r["momentum"] for r in opt.log]
    want = [oracle_momentum(i) for i in [0, 1, 2, 3, 298, 299, 300, 301]]
    if not all(abs(a - b) < 1e-9 for a, b in zip(got, want)):
        restarted = [oracle_momentum(i) for i in [0, 1, 2, 3, 0, 1, 2, 3]]
        raise AssertionError(
            f"Muon momentum per step: got {[round(x, 5) for x in got]}, want {[round(x, 5) for x in want]} "
            "(steps 0-3, then a resumed run's steps 298-301). " + (
            "Your schedule restarted at the resume: compute it from the global step (start_step + i), not from the "
            "number of steps this call ran." if all(abs(a - b) < 1e-9 for a, b in zip(got, restarted)) else
            "Your values lag one step behind: set the momentum BEFORE the optimizers step." if all(
                abs(a - b) < 1e-9 for a, b in zip(got[1:4], want[:3])) else
            "It is linear from 0.85 at step 0 to 0.95 at step 300, then 0.95; set it on every group with a 'momentum' key."))
    # a resumed run: steps 3..5 from the weights after steps 0..2 == steps 3..5 of the uninterrupted run
    a, b = TinyLM(), TinyLM()
    la = run_train_steps(a, [Recorder(a)], feed(0, 6, 2), 2, 0, 6, 6)
    run_train_steps(b, [Recorder(b)], feed(0, 3, 2), 2, 0, 3, 6)
    lb = run_train_steps(b, [Recorder(b)], feed(3, 3, 2), 2, 3, 3, 6)
    assert all(abs(x - y) < 1e-6 for x, y in zip(la[3:], lb)), (
        f"steps 3-5 after a resume ({[round(x, 5) for x in lb]}) differ from the uninterrupted run's "
        f"({[round(x, 5) for x in la[3:]]}): the schedule must depend on the global step, and each step must read "
        "exactly its own grad_accum micro-batches (a resume that re-reads the current batch shifts all the data)")
