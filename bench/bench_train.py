"""Training throughput of nanochat's GPT: tokens/s of a full optimizer step (forward + backward + Muon/AdamW),
eager vs torch.compile; on CUDA also MFU.

    python -m bench.bench_train --depth 4 --device cpu                  # eager, then compiled (the baseline is eager)
    python -m bench.bench_train --device cuda --depth 12 --depth 20     # bf16 autocast, B=32, T=2048, V=65536
    python -m bench.bench_train --device cpu --depth 2 --dtypes float32,bfloat16   # is bf16 autocast fast on this CPU?

What one step is: exactly what `scripts.base_train` does per micro-step and optimizer step — forward under bf16
autocast on CUDA (fp32 elsewhere), backward, the global gradient norm, one AdamW step (wte, lm_head) and one Muon step (block matrices;
Newton–Schulz in bf16 on CUDA, fp32 elsewhere), zero_grad — on a fixed random batch, so the data loader is not
measured (it keeps far ahead: see 04b_data). tokens/s = B·T / step time, averaged over --steps steps after
--warmup steps (compilation happens in the warm-up and is reported separately). FLOP/s uses the model's own
estimate (6 per matmul parameter + attention, `GPT.estimate_flops`); MFU divides it by the GPU's dense bf16 peak
from `nanochat.common.GPU_PEAK_FLOPS`. On CPU there is no meaningful peak: achieved GFLOP/s are shown instead.

Measured on a 2-core AMD EPYC CPU (AVX-512, 2 threads, torch 2.15, shared with other jobs: ranges over 3 runs;
the eager run is the baseline of the same invocation):

| device | depth | params | B×T | vocab | eager tok/s | compiled tok/s | compiled / eager | cold compile |
|---|---|---|---|---|---|---|---|---|
| CPU, 2 threads | 2 | 1.44M | 8×256 | 4,096 | 7,900–9,300 | 11,700–16,800 | 1.5–1.8× | ~18 s |
| CPU, 2 threads | 4 | 5.24M | 8×256 | 4,096 | 2,700–3,100 | 3,500–3,900 | 1.2–1.4× | ~21 s |

At depth 4 eager already reaches ~90 GFLOP/s (this CPU's fp32 matmul peak is ~145): the model is matmul-bound and
compilation can only fuse the element-wise rest (norms, RoPE, ReLU², soft cap); at depth 2 those are a bigger share.
CUDA figures (depth 12 and 20, bf16, MFU; the reference reports ~45-50% MFU at d20 on H100) were not measured yet:
run the second command above on a GPU to get them.
"""
import argparse, time
from contextlib import nullcontext
import torch

from nanochat.common import autodetect_device_type, get_compute_dtype, get_peak_flops, _DTYPES
from nanochat.gpt import GPT, GPTConfig
from nanochat.optim import setup_optimizers, clip_grad_norm


def build(depth, vocab_size, seq_len, device):
    torch.manual_seed(0)
    with torch.device("meta"): model = GPT(GPTConfig.from_depth(depth, vocab_size, seq_len))
    model.to_empty(device=device)
    model.init_weights()
    optimizers = setup_optimizers(model)
    for group in optimizers[1].param_groups: group["ns_dtype"] = torch.bfloat16 if device.type == "cuda" else torch.float32
    return model, optimizers


def bench_one(depth, mode, args, device, dtype):
    "Time `args.steps` training steps of a depth-`depth` model, eager or compiled, under `dtype` autocast (fp32: none)."
    model, optimizers = build(depth, args.vocab_size, args.seq_len, device)
    step_model = torch.compile(model, dynamic=False) if mode == "compile" else model
    autocast = torch.amp.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len), generator=g).to(device)
    y = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len), generator=g).to(device)

    def step():
        with autocast: loss = step_model(x, y)
        loss.backward()
        clip_grad_norm(optimizers)          # base_train measures the global gradient norm every step (no clip by default)
        for opt in optimizers: opt.step()
        model.zero_grad(set_to_none=True)
        return loss

    sync(); t0 = time.perf_counter()
    for _ in range(args.warmup): step()
    sync(); warmup_s = time.perf_counter() - t0
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps): loss = step()
    loss.item(); sync()
    dt = (time.perf_counter() - t0) / args.steps
    tokens = args.batch_size * args.seq_len
    flops = model.estimate_flops() * tokens / dt
    peak = get_peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(depth=depth, mode=mode, dtype=str(dtype).replace("torch.", ""), params=model.num_params(), step_ms=1000 * dt, tok_per_sec=tokens / dt,
                tflops=flops / 1e12, mfu=100 * flops / peak if peak else None, warmup_s=warmup_s, mem_gib=mem)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "mps"], help="default: autodetect")
    p.add_argument("--depth", type=int, action="append", default=None, help="repeatable (default: 4 on CPU, 12 and 20 on CUDA)")
    p.add_argument("--seq-len", type=int, default=None, help="T (default: 256 on CPU, 2048 on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="B rows per step (default: 8 on CPU, 32 on CUDA)")
    p.add_argument("--vocab-size", type=int, default=None, help="default: 4096 on CPU, 65536 on CUDA")
    p.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile (eager is the baseline)")
    p.add_argument("--dtypes", default=None, help="comma-separated autocast dtypes to compare, e.g. float32,bfloat16 "
                   "(default: the run's compute dtype, nanochat.common.get_compute_dtype); the first is the baseline")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    device = torch.device(args.device or autodetect_device_type())
    gpu = device.type == "cuda"
    args.depth = args.depth or ([12, 20] if gpu else [4])
    args.seq_len = args.seq_len or (2048 if gpu else 256)
    args.batch_size = args.batch_size or (32 if gpu else 8)
    args.vocab_size = args.vocab_size or (65536 if gpu else 4096)
    args.steps = args.steps or (20 if gpu else 10)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("eager", "compile") for m in modes): p.error(f"--modes must list eager and/or compile, got {args.modes!r}")
    try: dtypes = [_DTYPES[d.strip()] for d in args.dtypes.split(",") if d.strip()] if args.dtypes else [get_compute_dtype(device.type)]
    except KeyError as e: p.error(f"--dtypes: unknown dtype {e}; use float32, bfloat16 or float16")
    if args.threads: torch.set_num_threads(args.threads)
    if gpu: torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; B={args.batch_size} T={args.seq_len} vocab={args.vocab_size}; torch {torch.__version__}")
    print(f"{'depth':>5} {'params':>12} {'dtype':>9} {'mode':>8} {'step ms':>9} {'tok/s':>10} {'TFLOP/s':>8} {'MFU':>7} {'vs first':>8} {'warm-up s':>9}"
          + (f" {'mem GiB':>8}" if gpu else ""))
    results = []
    for depth in args.depth:
        base = None
        for dtype, mode in [(d, m) for d in dtypes for m in modes]:
            r = bench_one(depth, mode, args, device, dtype)
            base = base or r["tok_per_sec"]   # the first configuration of this depth is the baseline
            ratio = f"{r['tok_per_sec'] / base:.2f}x"
            mfu = f"{r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            print(f"{depth:>5} {r['params']:>12,} {r['dtype']:>9} {mode:>8} {r['step_ms']:>9.1f} {r['tok_per_sec']:>10,.0f} {r['tflops']:>8.3f} "
                  f"{mfu:>7} {ratio:>8} {r['warmup_s']:>9.1f}" + (f" {r['mem_gib']:>8.1f}" if gpu else ""), flush=True)
            results.append(r)
            if gpu: torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    main()
