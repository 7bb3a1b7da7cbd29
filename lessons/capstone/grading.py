"""Helpers the graders share: where a learner's tensor first leaves the tolerance, said in words."""
import torch


def first_bad(got, want, atol, rtol):
    "Where `got` first leaves the tolerance, as a readable string ('' if it never does)."
    bad = ~torch.isclose(got.double(), want.double(), atol=atol, rtol=rtol)
    if not bad.any(): return ""
    i = tuple(bad.nonzero()[0].tolist())
    return (f"first difference at index {i}: got {got[i].item():.7f}, want {want[i].item():.7f} "
            f"(max |diff| {(got.double() - want.double()).abs().max().item():.2e}, {bad.sum().item()} of {bad.numel()} entries off)")


def named_matches(got, candidates, same):
    """The names of the candidate mistakes whose result reproduces `got`. `candidates` maps a name to a function
    giving that mistake's result (or the result itself); `same(got, want)` compares. A candidate that raises is skipped."""
    out = []
    for name, c in candidates.items():
        try: want = c() if callable(c) else c
        except Exception: continue
        if same(got, want): out.append(name)
    return out
