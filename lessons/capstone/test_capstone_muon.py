"""Capstone stage 3 — the optimizers: Newton–Schulz, AdamW and Muon.

    pytest lessons/capstone/test_capstone_muon.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_muon.py   # the course's own implementation

The oracles: for Newton–Schulz, what it must do to singular values and singular vectors (checked with an SVD) and
nanochat's `zeropower_via_newtonschulz` in fp32; for AdamW, `torch.optim.AdamW`; for Muon, nanochat's `Muon`
optimizer (Newton–Schulz in fp32) on one matrix over several steps, plus the update size it is designed to have.
When your numbers disagree, the grader re-runs the step with the usual mistakes built in and names the one that
reproduces them.
"""
import math
import pytest, torch
from grading import first_bad
from adapters import run_newton_schulz, get_adamw_cls, run_muon_step

torch.set_num_threads(1)
ABC = (3.4445, -4.7750, 2.0315)   # Muon's quintic Newton–Schulz coefficients


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def matching(got, mistakes, atol, rtol):
    "Names of the known mistakes (name -> function giving that mistake's result) that reproduce `got`."
    out = []
    for name, fn in mistakes.items():
        try: w = fn()
        except RuntimeError: continue   # a mistake that cannot even run on these shapes
        if w.shape == got.shape and torch.isfinite(w).all() and torch.allclose(got.double(), w.double(), atol=atol, rtol=rtol):
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Newton–Schulz. A float64 re-implementation with switches, for the diagnosis; nanochat's (fp32) is the oracle.

def ns_variant(G, steps, coeffs=ABC, norm="fro", side="left"):
    a, b, c = coeffs
    X = G.double()
    X = X / (X.norm() + 1e-7) if norm == "fro" else X / torch.linalg.matrix_norm(X, ord=2)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + (B @ X if side == "left" else X @ B)
    return X


def ns_mistakes(G, steps):
    return {"the cubic Newton–Schulz (1.5, -0.5, 0); Muon uses the quintic (3.4445, -4.7750, 2.0315)": lambda: ns_variant(G, steps, (1.5, -0.5, 0.0)),
            "the coefficients b and c swapped": lambda: ns_variant(G, steps, (ABC[0], ABC[2], ABC[1])),
            "a normalisation by the spectral norm (largest singular value); divide by the Frobenius norm, which is "
            "cheap and also >= every singular value": lambda: ns_variant(G, steps, norm="spectral"),
            "X @ B instead of B @ X (with A = X X^T the polynomial must multiply X from the left)": lambda: ns_variant(G, steps, side="right"),
            "5 iterations whatever `steps` says": lambda: ns_variant(G, 5)}


def singular_values(X): return torch.linalg.svdvals(X.double())


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 64)])
def test_newton_schulz_singular_values_in_band(shape):
    "Five iterations move every singular value of a random matrix into [0.5, 1.5] and keep the singular vectors."
    G = randn(*shape, seed=sum(shape))
    X = run_newton_schulz(G, 5)
    assert torch.is_tensor(X) and tuple(X.shape) == shape, f"run_newton_schulz must return a tensor of G's shape {shape}"
    assert X.dtype == torch.float32, f"run_newton_schulz must return float32 (compute in float32 here), got {X.dtype}"
    assert torch.isfinite(X).all(), (
        "Newton–Schulz produced inf/nan. Divide G by its Frobenius norm first (every singular value then starts in "
        f"[0, 1], where the polynomial is designed to work) and check (a, b, c) = {ABC}: outside [0, 1], or with "
        "other coefficients, the quintic explodes.")
    s = singular_values(X)
    assert s.min() >= 0.5 and s.max() <= 1.5, (
        f"after 5 iterations the singular values of a random {shape[0]}x{shape[1]} matrix should all lie in "
        f"[0.5, 1.5], yours span [{s.min():.3f}, {s.max():.3f}]. Each iteration is X <- a X + (b A + c A^2) X with "
        f"A = X X^T and (a, b, c) = {ABC}; it maps every singular value s to a s + b s^3 + c s^5.")
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    M = U.T @ X.double() @ Vh.T                                   # diagonal iff X has G's singular vectors
    off = (M - torch.diag(M.diagonal())).norm() / M.norm()
    assert off < 1e-4, (
        f"X should share G's singular vectors (U^T X V diagonal), but {off:.1e} of it is off the diagonal. Newton–"
        "Schulz may only change singular VALUES: use odd polynomials of X built from X X^T (or X^T X), nothing else "
        "(and compute in float32 here: bf16 rounding alone moves the singular vectors by ~1e-2).")


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("shape", [(16, 40), (40, 16), (24, 24)])
def test_newton_schulz_matches_reference(shape, steps):
    from nanochat.optim import zeropower_via_newtonschulz
    G = randn(*shape, seed=steps + 10 * shape[0])
    want = zeropower_via_newtonschulz(G, steps=steps, dtype=torch.float32)
    assert torch.allclose(want.double(), ns_variant(G, steps), atol=1e-4), "grader bug: the two oracles disagree"
    got = run_newton_schulz(G, steps)
    assert tuple(got.shape) == shape, f"run_newton_schulz returned shape {tuple(got.shape)} for G of shape {shape}"
    if problem := first_bad(got, want, atol=1e-4, rtol=1e-3):
        found = matching(got, ns_mistakes(G, steps), atol=1e-4, rtol=1e-3)
        raise AssertionError(f"{steps} Newton–Schulz iteration(s) on a {shape[0]}x{shape[1]} matrix: {problem}. " + (
            f"Your result matches {found[0]}." if found else
            f"X = G / (||G||_F + 1e-7); then {steps} times: A = X @ X.T, B = b*A + c*(A @ A), X = a*X + B @ X, "
            f"with (a, b, c) = {ABC}; all in float32. (Transposing a tall matrix first is only a speed-up.)"))


def test_newton_schulz_zero_matrix():
    "A parameter no token touched has a zero gradient: its update must be zero, not nan."
    X = run_newton_schulz(torch.zeros(8, 12), 5)
    assert torch.isfinite(X).all() and X.abs().max() == 0, (
        "Newton–Schulz of a zero matrix must be zero, got nan/inf or non-zeros: add a small eps to the norm you "
        "divide by (G / (||G||_F + 1e-7)).")


# ---------------------------------------------------------------------------------------------------------------
# AdamW. Oracle: torch.optim.AdamW. The scenario: a small regression with two parameter groups, weight decay,
# a parameter that never gets a gradient, and a learning-rate schedule that changes group["lr"] half-way.

LR, LR2, BETAS, EPS, WD, STEPS = 1e-2, 5e-2, (0.8, 0.95), 1e-3, 0.1, 20   # eps large enough that its place shows


def adamw_run(make_opt):
    "Run the scenario with `make_opt(param_groups)`; returns the final parameters (W, b, untouched)."
    W = torch.nn.Parameter(randn(4, 6, seed=0)); b = torch.nn.Parameter(randn(4, seed=1)); untouched = torch.nn.Parameter(randn(3, seed=2))
    X, Y = randn(16, 6, seed=3), randn(16, 4, seed=4)
    opt = make_opt([dict(params=[W]), dict(params=[b, untouched], lr=LR2)])
    for step in range(STEPS):
        if step == STEPS // 2:
            for group in opt.param_groups: group["lr"] *= 0.5          # what the LR schedule does every step
        loss = ((X @ W.T + b - Y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in (W, b, untouched)]


def flat(params): return torch.cat([p.flatten() for p in params])


class VariantAdamW(torch.optim.Optimizer):
    "AdamW with switches that build the usual mistakes and variants (defaults: PyTorch's arithmetic)."
    def __init__(self, params, lr, betas, eps, weight_decay, **mistake):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.m = dict(dict(bias_correction=True, decay="decoupled", eps_at="corrected", lr_from="group"), **mistake)
        self.lr0 = [g["lr"] for g in self.param_groups]

    @torch.no_grad()
    def step(self):
        o = self.m
        for gi, group in enumerate(self.param_groups):
            lr = group["lr"] if o["lr_from"] == "group" else self.lr0[gi]
            (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None: continue
                g, st = p.grad.clone(), self.state[p]
                if not st: st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                t = st["t"]
                if o["decay"] == "coupled": g = g + wd * p
                if o["decay"] == "decoupled": p.mul_(1 - lr * wd)
                if o["decay"] == "without_lr": p.mul_(1 - wd)
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                c1, c2 = (1 - b1 ** t, 1 - b2 ** t) if o["bias_correction"] else (1.0, 1.0)
                m_hat, v_hat = st["m"] / c1, st["v"] / c2
                if o["eps_at"] == "corrected": upd = m_hat / (v_hat.sqrt() + eps)
                elif o["eps_at"] == "inside_sqrt": upd = m_hat / (v_hat + eps).sqrt()
                else: upd = m_hat / (st["v"].sqrt() / math.sqrt(c2) + eps / math.sqrt(c2))   # the folded form: eps on sqrt(v)
                p.add_(upd, alpha=-lr)
                if o["decay"] == "after": p.mul_(1 - lr * wd)


def adamw_mistakes():
    v = lambda **m: (lambda: flat(adamw_run(lambda groups: VariantAdamW(groups, LR, BETAS, EPS, WD, **m))))
    return {"no bias correction (divide m by 1 - beta1^t and v by 1 - beta2^t, t counted from 1)": v(bias_correction=False),
            "L2 regularisation (weight_decay * p added to the gradient); AdamW decays the weights directly: "
            "p *= 1 - lr * weight_decay": v(decay="coupled"),
            "weight decay without the learning rate (p *= 1 - weight_decay); it is p *= 1 - lr * weight_decay": v(decay="without_lr"),
            "weight decay applied after the Adam step; decay first, as PyTorch does": v(decay="after"),
            "eps inside the square root; it is m_hat / (sqrt(v_hat) + eps)": v(eps_at="inside_sqrt"),
            "Kingma & Ba's folded form, lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps) (the form the reference's "
            "multi-GPU AdamW used). It is a valid Adam (arXiv:1412.6980, Section 2), but its eps acts on the uncorrected "
            "sqrt(v), so it is not torch.optim.AdamW's arithmetic, which this contract asks for (and which the 1-GPU "
            "path of the reference ran: two code paths, two results): divide by (sqrt(v_hat) + eps)": v(eps_at="folded"),
            "the learning rate read once in __init__: read group['lr'] at every step(), the schedule changes it": v(lr_from="init")}


def test_adamw_first_step_is_lr_times_sign():
    "With bias correction, Adam's first step moves every entry by ~lr, whatever the size of its gradient."
    AdamW = get_adamw_cls()
    p = torch.nn.Parameter(torch.zeros(5, 7))
    opt = AdamW([p], lr=0.01, betas=BETAS, eps=1e-12, weight_decay=0.0)
    g = randn(5, 7, seed=5) * torch.logspace(-3, 2, 7)           # gradients spanning 5 orders of magnitude
    p.grad = g.clone()
    opt.step()
    ratio = (-p.detach() / (0.01 * g.sign())).flatten()
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4), (
        f"after one step every entry should have moved by lr = 0.01 against its gradient's sign; you moved "
        f"{ratio.min():.4f}..{ratio.max():.4f} x lr. " + (
        "0.894 x lr is the uncorrected (1-beta1)/sqrt(1-beta2) with betas (0.8, 0.95): divide m by 1 - beta1^t and "
        "v by 1 - beta2^t, with t = 1 at the first step." if abs(ratio.mean() - 0.2 / math.sqrt(0.05)) < 1e-3 else
        "Adam's step is lr * m_hat / (sqrt(v_hat) + eps), and at t = 1 m_hat = g, sqrt(v_hat) = |g|."))


def test_adamw_matches_torch():
    want = adamw_run(lambda groups: torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False))
    assert torch.allclose(flat(want), flat(adamw_run(lambda g: VariantAdamW(g, LR, BETAS, EPS, WD))), atol=1e-6), \
        "grader bug: the two oracles disagree"
    AdamW = get_adamw_cls()
    got = adamw_run(lambda groups: AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD))
    assert torch.equal(got[2], want[2]), (
        "a parameter whose .grad is None was changed: skip it (no gradient, no step — not even weight decay), "
        "as torch.optim does.")
    for name, g, w in zip(("W (group 0)", "b (group 1, its own lr)"), got, want):
        if problem := first_bad(g, w, atol=1e-6, rtol=1e-5):
            found = matching(flat(got), adamw_mistakes(), atol=1e-6, rtol=1e-5)
            raise AssertionError(f"after {STEPS} AdamW steps (lr {LR} and {LR2} by group, halved half-way; betas {BETAS}, "
                                 f"eps {EPS}, weight decay {WD}), {name} differs from torch.optim.AdamW: {problem}. " + (
                f"Your results match {found[0]}." if found else
                "Per step t = 1, 2, ...: p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                "p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps); lr and wd from the parameter's own group."))


# ---------------------------------------------------------------------------------------------------------------
# Muon. Oracle: nanochat.optim.Muon (Newton–Schulz in fp32) on a single matrix.

MU, MUON_LR, MUON_STEPS = 0.95, 0.02, 5


def muon_variant(W, g, buf, lr, mu, nesterov, ns_steps, scale="sqrt_max1", momentum="ema", orthogonalise=True):
    "One Muon step with switches for the usual mistakes; returns (W, buf)."
    rows, cols = W.shape
    buf = mu * buf + (1 - mu) * g if momentum == "ema" else mu * buf + g
    u = (1 - mu) * g + mu * buf if nesterov else buf
    if momentum == "none": u = g
    O = ns_variant(u, ns_steps).float() if orthogonalise else u
    s = {"sqrt_max1": max(1.0, rows / cols) ** 0.5, "none": 1.0, "sqrt": (rows / cols) ** 0.5, "linear": max(1.0, rows / cols),
         "inverted": max(1.0, cols / rows) ** 0.5}[scale]
    return W - lr * s * O, buf


def muon_oracle(W0, grads, nesterov):
    "nanochat's Muon optimizer on one matrix; the parameter after every step."
    from nanochat.optim import Muon
    p = torch.nn.Parameter(W0.clone())
    opt = Muon([p], lr=MUON_LR, momentum=MU, nesterov=nesterov, ns_steps=5, ns_dtype=torch.float32)
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out


def muon_variant_run(W0, grads, nesterov, **mistake):
    "`muon_variant` over all `grads` from a zero buffer; the final parameter."
    W, buf = W0.clone(), torch.zeros_like(W0)
    for g in grads: W, buf = muon_variant(W, g, buf, MUON_LR, MU, nesterov, 5, **mistake)
    return W


def muon_mistakes(W0, grads, nesterov):
    run = lambda nesterov=nesterov, **m: (lambda: muon_variant_run(W0, grads, nesterov, **m))
    flipped = "Nesterov where it was not asked for" if not nesterov else "no Nesterov step (u = buf)"
    return {flipped: run(nesterov=not nesterov),
            "no aspect-ratio scaling; multiply the step by sqrt(max(1, rows/cols))": run(scale="none"),
            "sqrt(rows/cols) without the max(1, .): wide matrices must not get a factor below 1": run(scale="sqrt"),
            "max(1, rows/cols) without the square root": run(scale="linear"),
            "sqrt(max(1, cols/rows)): rows are the OUTPUT dim (nn.Linear stores (out, in)); tall means rows > cols": run(scale="inverted"),
            "no momentum (the raw gradient goes into Newton–Schulz)": run(momentum="none"),
            "no Newton–Schulz (the momentum itself is the step)": run(orthogonalise=False)}


def test_muon_momentum_buffer():
    W, g = randn(12, 20, seed=6) * 0.1, randn(12, 20, seed=7)
    out = run_muon_step(W.clone(), g.clone(), torch.zeros_like(W), MUON_LR, MU, True, 5)
    assert isinstance(out, (tuple, list)) and len(out) == 2, "run_muon_step must return (new_W, new_momentum_buffer)"
    _, buf = out
    g2 = randn(12, 20, seed=8)
    _, buf2 = run_muon_step(W.clone(), g2.clone(), buf.clone(), MUON_LR, MU, True, 5)
    for got, want, when in ((buf, (1 - MU) * g, "after the first step"), (buf2, MU * (1 - MU) * g + (1 - MU) * g2, "after the second step")):
        assert torch.allclose(got, want, atol=1e-6), (
            f"momentum buffer {when}: want buf = momentum*buf + (1-momentum)*grad (an average of recent gradients, "
            "nanochat's buf.lerp_(grad, 1 - momentum)). " + (
            "Yours is the classic buf = momentum*buf + grad. With its Nesterov step u = grad + momentum*buf that "
            "gives the very same update (the average form is (1 - momentum) times the classic one, and Newton–Schulz "
            "normalises its input first), but this adapter's contract is the average form." if torch.allclose(got, want / (1 - MU), atol=1e-5) else
            "Update the buffer BEFORE computing the step, and return the new buffer."))


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (32, 32)])
def test_muon_matches_reference(shape, nesterov):
    W0 = randn(*shape, seed=shape[0]) / math.sqrt(shape[1])
    grads = [randn(*shape, seed=100 + t) + 0.5 * randn(*shape, seed=99) for t in range(MUON_STEPS)]  # correlated over steps
    want = muon_oracle(W0, grads, nesterov)
    assert torch.allclose(want[-1], muon_variant_run(W0, grads, nesterov), atol=1e-5), "grader bug: the two oracles disagree"
    W, buf = W0.clone(), torch.zeros_like(W0)
    for t, g in enumerate(grads):
        W, buf = run_muon_step(W.clone(), g.clone(), buf.clone(), MUON_LR, MU, nesterov, 5)
        if problem := first_bad(W, want[t], atol=1e-5, rtol=1e-4):
            found = matching(W, muon_mistakes(W0, grads[:t + 1], nesterov), atol=1e-5, rtol=1e-4)
            raise AssertionError(
                f"Muon on a {shape[0]}x{shape[1]} matrix (lr {MUON_LR}, momentum {MU}, nesterov={nesterov}), step {t + 1}: "
                f"{problem}. " + (f"Your result matches {found[0]}." if found else
                "buf = mu*buf + (1-mu)*g; u = (1-mu)*g + mu*buf if nesterov else buf; O = Newton–Schulz(u, 5) in fp32; "
                "W -= lr * sqrt(max(1, rows/cols)) * O."))


def test_muon_update_size():
    """The point of the aspect-ratio factor: an orthogonalised step has singular values ~1, so its RMS entry is
    1/sqrt(max(rows, cols)); times sqrt(max(1, rows/cols)) it becomes ~lr/sqrt(cols) for every shape: each output
    changes by about lr for an input of unit RMS, tall or wide."""
    sizes = {}
    for shape in [(64, 16), (16, 64), (32, 32)]:
        W = torch.zeros(*shape)
        W1, _ = run_muon_step(W.clone(), randn(*shape, seed=shape[0] + 1), torch.zeros(*shape), MUON_LR, MU, True, 5)
        sizes[shape] = (W1 - W).pow(2).mean().sqrt().item() * math.sqrt(shape[1]) / MUON_LR
    assert all(0.6 < s < 1.3 for s in sizes.values()), (
        "the RMS of a Muon step, in units of lr / sqrt(cols), should be ~0.7-1.2 for every shape; yours: " +
        ", ".join(f"{r}x{c}: {s:.2f}" for (r, c), s in sizes.items()) +
        ". Scale the orthogonalised update by sqrt(max(1, rows/cols)) (rows = output dim, as nn.Linear stores it).")
