"""Which SDPA kernel a cached decode should use on a GPU: PyTorch's default choice (cuDNN's attention, on Hopper)
against the flash / memory-efficient / math kernels that `GPT.forward` allows with a cache (`cache_attention`).

    python -m bench.bench_decode_backends                    # CUDA only: d20, vocab 65,536, bf16

cuDNN builds an execution plan the first time it sees a shape, and a KV cache's key length is a new shape at every
decode step, so the first generation at every new length pays a plan per step. The script times Engine.generate
step by step (a sync after each token) for: a first pass (cold), the same lengths again (plans cached), new lengths,
a batch of 16 at new lengths, all with cuDNN's kernel allowed, then the same without it. Per run: the prefill, the
median and worst step, and decode tokens/s. The course's default (no cuDNN with a cache) is switched off for the
first half by replacing `cache_attention` with a no-op, so torch's global `enable_cudnn_sdp` switch decides.
"""
import argparse, time
from contextlib import nullcontext

import torch

import nanochat.gpt as gpt
from bench.bench_engine import NoSpecialTokens, build_model
from nanochat.engine import Engine


def timed_generate(engine, prompt_len, batch, gen, label):
    "Engine.generate with a device sync after every token: (prefill s, [step s])."
    prompt = list(range(100, 100 + prompt_len))
    torch.cuda.synchronize(); t = [time.perf_counter()]
    for _ in engine.generate(prompt, num_samples=batch, max_tokens=gen, temperature=0.0, seed=0):
        torch.cuda.synchronize(); t.append(time.perf_counter())
    d = [b - a for a, b in zip(t, t[1:])]
    steps = sorted(d[1:])
    print(f"{label:<34} prompt {prompt_len:>3} batch {batch:>2}: prefill {d[0] * 1e3:7.1f} ms, step median "
          f"{steps[len(steps) // 2] * 1e3:6.2f} ms, worst {steps[-1] * 1e3:6.1f} ms -> {batch * len(steps) / sum(steps):8.1f} tok/s",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--gen", type=int, default=128, help="new tokens per run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark compares CUDA attention kernels; torch sees no CUDA device")
    dev = torch.device("cuda")
    engine = Engine(build_model(args.depth, args.vocab, 2048, dev, torch.bfloat16), NoSpecialTokens(args.vocab))
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, depth {args.depth}, bf16, {args.gen} new tokens")
    course_default = gpt.cache_attention
    gpt.cache_attention = lambda device: nullcontext()   # let torch's own choice (and its global switch) decide
    try:
        timed_generate(engine, 16, 1, args.gen, "cuDNN allowed, first pass")
        timed_generate(engine, 16, 1, args.gen, "cuDNN allowed, same lengths")
        timed_generate(engine, 24, 1, args.gen, "cuDNN allowed, new lengths")
        timed_generate(engine, 24, 16, args.gen, "cuDNN allowed, new batch")
        torch.backends.cuda.enable_cudnn_sdp(False)
        timed_generate(engine, 40, 1, args.gen, "no cuDNN, new lengths")
        timed_generate(engine, 40, 1, args.gen, "no cuDNN, same lengths")
        timed_generate(engine, 40, 16, args.gen, "no cuDNN, new batch")
    finally:
        gpt.cache_attention = course_default
        torch.backends.cuda.enable_cudnn_sdp(True)
    timed_generate(engine, 56, 16, args.gen, "course default (cache_attention)")


if __name__ == "__main__":
    main()
