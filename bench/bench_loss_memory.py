"""Peak memory of the loss path (and of a whole forward + backward) at d20 shapes, without a GPU.

    python -m bench.bench_loss_memory                          # d20: B=32, T=2048, V=65,536 (~30 s on CPU)
    python -m bench.bench_loss_memory --depth 26 --batch 16    # other shapes
    python -m bench.bench_loss_memory --device cuda            # on a GPU: also torch.cuda.max_memory_allocated

Method. Everything runs on the **meta** device (shapes and dtypes, no data), so d20 shapes cost nothing. A
`TorchDispatchMode` sees every tensor each operation creates; a weak reference to its storage tells when it is
freed. After every operation the live bytes are summed; the maximum is the peak an accelerator would need for the
tensors created in the measured code (the weights themselves are not counted; their gradients are).

Three loss paths, from the final hidden states (bf16, as under autocast) to the backward through `lm_head`:
  * reference, early (Oct-Nov 2025): soft cap in bf16, then `.float()`, then cross-entropy;
  * direct (the reference after its fix, and this course before the chunked loss): `.float()`, cap in fp32, CE;
  * chunked: `nanochat.gpt.softcap_cross_entropy`, the same fp32 arithmetic a slice of rows at a time.
Then the whole model, forward + loss + backward, with bf16 weights standing in for autocast: the direct loss vs
the chunked one (the loss path is swapped in `nanochat.gpt` for the run). Read the difference there, not the totals:
the run is eager, and on the meta device SDPA takes its math path, which keeps every layer's (T, T) attention
weights (a flash kernel and torch.compile on a GPU hold far less). With `--device cuda` the same runs on real
tensors and the allocator's peak is printed beside (at d20, B=32 the whole-model run needs --skip-model or a
smaller --batch).

Measured on CPU (meta), d20 shapes: loss path 60.5 GB (reference, early), 69.1 GB (direct), 4.1 GB (chunked):
0.06x the direct path, 0.07x the reference's; whole model 261.9 -> 201.8 GB (0.77x).
"""
import argparse, time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.multiprocessing.reductions import StorageWeakRef

import nanochat.gpt as gpt
from nanochat.gpt import GPT, GPTConfig, softcap_cross_entropy


class PeakBytes(TorchDispatchMode):
    "Peak of the bytes held by tensors created inside the `with` block."
    def __init__(self):
        super().__init__()
        self.live, self.peak = {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st._cdata not in self.live: self.live[st._cdata] = (StorageWeakRef(st), st.nbytes())
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def loss_reference_early(x, w, y, softcap=15.0):
    logits = x @ w.t()
    logits = (softcap * torch.tanh(logits / softcap)).float()          # cap in the compute dtype, then fp32
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), ignore_index=-1)

def loss_direct(x, w, y, softcap=15.0):
    logits = (x @ w.t()).float()
    logits = softcap * torch.tanh(logits / softcap)                    # fp32 before the cap
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), ignore_index=-1)

def loss_chunked(x, w, y, softcap=15.0):
    return softcap_cross_entropy(x, w, y, softcap)


def peak(fn, device):
    "(tracked peak bytes, cuda allocator peak bytes or None) of fn() followed by nothing else."
    if device == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    with PeakBytes() as pb:
        fn()
    cuda = torch.cuda.max_memory_allocated() - base if device == "cuda" else None
    return pb.peak, cuda


def loss_path(loss_fn, B, T, C, V, device):
    x = torch.randn(B, T, C, dtype=torch.bfloat16, device=device, requires_grad=True)   # final hidden states
    w = torch.randn(V, C, dtype=torch.bfloat16, device=device, requires_grad=True)      # lm_head, as autocast casts it
    y = torch.randint(0, V, (B, T), device=device)
    return peak(lambda: loss_fn(x, w, y).backward(), device)


@contextmanager
def loss_impl(fn):
    "Run GPT.forward with `fn(x, weight, targets, softcap, reduction)` as its loss."
    saved = gpt.softcap_cross_entropy
    gpt.softcap_cross_entropy = fn
    try: yield
    finally: gpt.softcap_cross_entropy = saved


def whole_model(depth, B, T, V, device, chunked):
    with torch.device("meta"): model = GPT(GPTConfig.from_depth(depth, V, T))
    model = model.to_empty(device=device).to(torch.bfloat16)
    if device != "meta": model.init_weights(); model.to(torch.bfloat16)
    idx = torch.randint(0, V, (B, T), device=device)
    direct = lambda x, w, y, cap, red: loss_direct(x, w, y, cap)
    with loss_impl(softcap_cross_entropy if chunked else direct):
        return peak(lambda: model(idx, idx).backward(), device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--device", default="meta", help="meta (default: no data, any size) or cuda (real tensors)")
    ap.add_argument("--skip-model", action="store_true", help="only the loss path, not the whole model")
    args = ap.parse_args(argv)
    cfg = GPTConfig.from_depth(args.depth, args.vocab, args.seq_len)
    B, T, C, V = args.batch, args.seq_len, cfg.n_embd, args.vocab
    print(f"d{args.depth}: B={B}, T={T}, C={C}, V={V:,} -> {B * T * V / 1e9:.2f}G logits "
          f"({B * T * V * 4 / 1e9:.1f} GB per fp32 copy); device {args.device}")
    gb = lambda b: "-" if b is None else f"{b / 1e9:8.2f}"
    print(f"\n{'loss path (fwd + bwd)':<44} {'peak GB':>8} {'cuda GB':>8} {'vs direct':>9} {'vs ref.':>8}")
    res, secs = {}, {}
    paths = [("reference, early: cap in bf16, then .float()", loss_reference_early),
             ("direct: .float(), cap in fp32, CE", loss_direct),
             ("chunked softcap_cross_entropy", loss_chunked)]
    for name, fn in paths:
        t0 = time.time(); res[name] = loss_path(fn, B, T, C, V, args.device); secs[name] = time.time() - t0
    ref, direct = res[paths[0][0]][0], res[paths[1][0]][0]
    for name, (p, c) in res.items():
        print(f"{name:<44} {gb(p)} {gb(c)} {p / direct:9.2f} {p / ref:8.2f}   ({secs[name]:.1f}s)")
    if not args.skip_model:
        print(f"\n{'whole model, forward + loss + backward':<44} {'peak GB':>8} {'cuda GB':>8}")
        before = whole_model(args.depth, B, T, V, args.device, chunked=False)
        after = whole_model(args.depth, B, T, V, args.device, chunked=True)
        print(f"{'direct loss':<44} {gb(before[0])} {gb(before[1])}")
        print(f"{'chunked loss':<44} {gb(after[0])} {gb(after[1])}   after / before = {after[0] / before[0]:.2f}")


if __name__ == "__main__":
    main()
