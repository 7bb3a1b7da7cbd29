"""Training throughput of midtraining and SFT against pretraining, at the same model size, in one run.

    python -m bench.bench_chat_train                          # CPU: depth 2, T=256, vocab 4096 (~1 min)
    python -m bench.bench_chat_train --device cuda --depth 20 --seq-len 2048 --batch-size 32 --vocab-size 65536

Three loops, each a full optimizer step (forward, backward, AdamW + Muon, zero_grad) on the same freshly built model:

* **pretrain** (the baseline): a fixed random (B, T) batch — no data work at all;
* **mid**: `nanochat.midtrain.packed_batches` — conversations rendered and packed into (B, T) rows on the fly, so
  the rendering cost is included; every position is a target;
* **sft**: B conversations per micro-step rendered (`render_for_sft`), padded to the longest (`collate_sft`) and
  trained with the token-normalised masked loss (`sft_backward`). Its rows are shorter than T and vary in length.

tokens/s counts the positions the model processes (B·T for pretrain and mid, B·L for SFT, padding included); SFT
also shows supervised tokens/s (the targets that carry gradient) and the share of padding. The conversations are
the offline SFT mixture when `nanochat.tasks` can build it, else a small built-in set. A tokenizer is trained on
the spot (vocab --vocab-size) so nothing has to exist on disk.

Measured on a 2-core AMD EPYC CPU while ~6 other jobs shared it (load average 7: absolute figures are 10-20x below a
quiet box's, the ratios are what this run is for; depth 2, B=8, T=256, vocab 4,096, fp32, 6 timed steps):

| loop | tok/s | vs pretrain | supervised tok/s |
|---|---|---|---|
| pretrain | 592 | 1.00x | 592 |
| mid | 537 | 0.91x | 537 |
| sft | 232 | 0.39x | 66 |

Midtraining costs what pretraining costs (rendering and packing conversations on the fly is ~10 % at this tiny
size, less at real sizes where the model dominates). SFT processes fewer tokens per second: 40 % of its positions
are padding here, its batches change shape every step, and only ~28 % of the positions are supervised. CUDA figures
(d20, bf16): run it with `--device cuda`.
"""
import argparse, inspect, json, time
from contextlib import nullcontext
import torch

from nanochat.common import autodetect_device_type, get_compute_dtype
from nanochat.gpt import GPT, GPTConfig
from nanochat.optim import setup_optimizers
from nanochat.tokenizer import Tokenizer
from nanochat.midtrain import packed_batches
from nanochat.sft import render_for_sft, collate_sft, sft_backward

FALLBACK = [{"messages": [{"role": "user", "content": f"What is {a} times {b}?"},
                          {"role": "assistant", "content": [{"type": "text", "text": f"{a} times {b} is "},
                                                            {"type": "python", "text": f"{a}*{b}"},
                                                            {"type": "python_output", "text": str(a * b)},
                                                            {"type": "text", "text": f"{a * b}.\n#### {a * b}"}]}]}
            for a in range(2, 30) for b in range(3, 12)]


def conversations(n):
    try:
        from nanochat.sft import sft_train_mixture
        mix = sft_train_mixture()
        return [mix[i] for i in range(min(n, len(mix)))], "the SFT mixture"
    except Exception as e:  # no task data here: the built-in set keeps the benchmark runnable
        return FALLBACK[:n], f"built-in arithmetic conversations ({type(e).__name__})"


def build(args, device):
    torch.manual_seed(0)
    with torch.device("meta"): model = GPT(GPTConfig.from_depth(args.depth, args.vocab_size, args.seq_len))
    model.to_empty(device=device); model.init_weights()
    optimizers = setup_optimizers(model)
    for group in optimizers[1].param_groups: group["ns_dtype"] = torch.bfloat16 if device.type == "cuda" else torch.float32
    return model, optimizers


def timed(step, args, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup): step()
    sync(); t0 = time.perf_counter()
    totals = [0, 0]
    for _ in range(args.steps):
        n, s = step(); totals[0] += n; totals[1] += s
    sync()
    dt = time.perf_counter() - t0
    return totals[0] / dt, totals[1] / dt, 1000 * dt / args.steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "mps"], help="default: autodetect")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="rows per step (SFT: conversations per step)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device(args.device or autodetect_device_type())
    dtype = get_compute_dtype(device.type)
    autocast = torch.amp.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    convs, what = conversations(2000)
    texts = [inspect.getsource(m) for m in (json.decoder, argparse, inspect)] + [json.dumps(c) for c in convs[:500]]
    t0 = time.perf_counter()
    tok = Tokenizer.train_from_iterator(texts, vocab_size=args.vocab_size)
    print(f"device {device.type} ({dtype}), depth {args.depth}, B={args.batch_size}, T={args.seq_len}, vocab {args.vocab_size}; "
          f"{len(convs)} conversations from {what}; tokenizer trained in {time.perf_counter() - t0:.1f}s")
    B, T = args.batch_size, args.seq_len

    model, opts = build(args, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, args.vocab_size, (B, T), generator=g).to(device)
    y = torch.randint(0, args.vocab_size, (B, T), generator=g).to(device)
    def pre_step():
        with autocast: loss = model(x, y)
        loss.backward()
        for o in opts: o.step()
        model.zero_grad(set_to_none=True)
        return B * T, B * T
    pre = timed(pre_step, args, device)

    model, opts = build(args, device)
    stream = packed_batches(convs, tok, B, T, device=device)
    def mid_step():
        xb, yb, _, _ = next(stream)
        with autocast: loss = model(xb, yb)
        loss.backward()
        for o in opts: o.step()
        model.zero_grad(set_to_none=True)
        return B * T, B * T
    mid = timed(mid_step, args, device)

    model, opts = build(args, device)
    pad, cursor, padding = tok.encode_special("<|assistant_end|>"), [0], [0, 0]
    def sft_step():
        rows = [render_for_sft(convs[(cursor[0] + j) % len(convs)], tok, T)[:2] for j in range(B)]
        cursor[0] += B
        xb, yb = collate_sft(rows, pad, device)
        with autocast: sft_backward(model, [(xb, yb)])
        for o in opts: o.step()
        model.zero_grad(set_to_none=True)
        padding[0] += sum(xb.shape[1] - (len(ids) - 1) for ids, _ in rows); padding[1] += xb.numel()
        return xb.numel(), int((yb >= 0).sum())
    sft = timed(sft_step, args, device)

    print(f"{'loop':>8} {'ms/step':>8} {'tok/s':>10} {'vs pretrain':>11} {'supervised tok/s':>17}")
    for name, (tps, sps, ms) in (("pretrain", pre), ("mid", mid), ("sft", sft)):
        print(f"{name:>8} {ms:>8.1f} {tps:>10,.0f} {tps / pre[0]:>10.2f}x {sps:>17,.0f}")
    print(f"sft: {100 * padding[0] / max(padding[1], 1):.0f}% of the positions are padding (rows padded to the longest of each batch)")
    return dict(pretrain=pre, mid=mid, sft=sft)


if __name__ == "__main__":
    main()
