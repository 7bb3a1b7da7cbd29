"""Serving throughput and latency: continuous batching vs one request at a time, in the same run.

    python -m bench.bench_serve                               # CPU, a depth-4 model, HTTP, concurrency 1/4/16/32
    python -m bench.bench_serve --direct                      # no HTTP: the scheduler alone (needs only torch)
    python -m bench.bench_serve --device cuda --depth 20 --vocab 65536 --direct --max-tokens 256
    python -m bench.bench_serve --compare a639103 --concurrency 16   # before/after: old scheduler+model code vs now

For each policy (--max-batch 32 = batched, --max-batch 1 = one request at a time, like a plain worker pool) a
server process is started with the same randomly initialised model, then C concurrent clients (C in --concurrency)
each send --requests requests back to back and stream the replies. Printed per row: aggregate generated tokens/s
over all clients, time to first token (p50/p95, from sending the request to the first token arriving), and the
ratios batched / one-at-a-time and against the policy's own single stream.

The model is random (the speed of a forward pass does not depend on what the weights know); its output rows for
the stop tokens are zeroed and decoding is greedy, so every reply runs to exactly --max-tokens tokens and both
policies generate the same amount of work. The tokenizer is byte-level (256 bytes + nanochat's special tokens),
built without training.
"""
import argparse, asyncio, json, socket, subprocess, sys, threading, time
import torch


def build(depth, vocab, seq_len, device, seed=0):
    "A random GPT of the given depth and a byte-level chat tokenizer; greedy decoding never picks a stop token."
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.tokenizer import Tokenizer
    tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)})
    cfg = GPTConfig.from_depth(depth, vocab_size=max(vocab, tok.get_vocab_size()), sequence_len=seq_len)
    torch.manual_seed(seed)
    with torch.device("meta"): model = GPT(cfg)
    model.to_empty(device=device); model.init_weights()
    with torch.no_grad():
        for p in model.parameters():   # init_weights zeroes the output head and residual projections: randomise them
            if p.ndim == 2 and not p.any(): p.normal_(0, 1.0 / p.size(1) ** 0.5)
        for t in ("<|assistant_end|>", "<|bos|>"): model.lm_head.weight[tok.encode_special(t)] = 0
    return model.eval(), tok


def prompt_for(i):
    return [{"role": "user", "content": f"Client {i} asks: " + "tell me about the sea. " * (1 + i % 4)}]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# ---- the server process ----
def serve(args):
    import uvicorn
    from nanochat.serve import Scheduler
    from nanochat.api import make_app
    torch.set_num_threads(args.threads)
    model, tok = build(args.depth, args.vocab, args.seq_len, args.device)
    amp = torch.bfloat16 if args.device == "cuda" else None
    app = make_app(lambda: [Scheduler(model, tok, max_batch=args.max_batch, autocast_dtype=amp)], model_id="bench")
    uvicorn.run(app, host="127.0.0.1", port=args.serve, log_level="warning")


# ---- HTTP clients ----
async def http_level(url, conc, args):
    import httpx
    ttft, tokens = [], 0
    async def client(i, h):
        nonlocal tokens
        for _ in range(args.requests):
            body = {"messages": prompt_for(i), "max_tokens": args.max_tokens, "temperature": 0}
            t0, first = time.perf_counter(), None
            async with h.stream("POST", f"{url}/chat/completions", json=body) as r:
                if r.status_code != 200: raise RuntimeError(f"HTTP {r.status_code}: {await r.aread()}")
                async for line in r.aiter_lines():
                    if not line.startswith("data: "): continue
                    ev = json.loads(line[6:])
                    if "error" in ev: raise RuntimeError(ev["error"])
                    if "token" in ev and first is None: first = time.perf_counter(); ttft.append(first - t0)
            tokens += args.max_tokens
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=conc + 4)) as h:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, h) for i in range(conc)))
        wall = time.perf_counter() - t0
    return tokens / wall, ttft


def run_http(args, max_batch):
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bench.bench_serve", "--serve", str(port), "--max-batch", str(max_batch),
           "--depth", str(args.depth), "--vocab", str(args.vocab), "--seq-len", str(args.seq_len),
           "--device", args.device, "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd)
    try:
        from nanochat.api import wait_ready
        wait_ready(f"http://127.0.0.1:{port}", timeout=300)
        asyncio.run(http_level(f"http://127.0.0.1:{port}", 1, argparse.Namespace(**{**vars(args), "requests": 1})))  # warm-up
        return {c: asyncio.run(http_level(f"http://127.0.0.1:{port}", c, args)) for c in args.concurrency}
    finally:
        proc.terminate(); proc.wait(timeout=30)


# ---- direct (no HTTP) ----
def run_direct(args, max_batch, model, tok, serve_mod=None, keep=False):
    "{concurrency: (tokens/s, ttfts)} of the scheduler driven in-process; serve_mod: another version of nanochat.serve."
    if serve_mod is None: import nanochat.serve as serve_mod
    Scheduler, GenRequest = serve_mod.Scheduler, serve_mod.GenRequest
    amp = torch.bfloat16 if args.device == "cuda" else None
    sched = Scheduler(model, tok, max_batch=max_batch, autocast_dtype=amp)
    render = lambda msgs: tok.render_conversation({"messages": msgs})[0] + [tok.encode_special("<|assistant_start|>")]

    def level(conc, requests):
        ttft, lock = [], threading.Lock()
        def client(i):
            for _ in range(requests):
                req = sched.submit(GenRequest(render(prompt_for(i)), max_tokens=args.max_tokens, temperature=0.0))
                first = None
                while True:
                    batch = req.queue.get(timeout=600)
                    if first is None and any(e.get("text") for e in batch):
                        first = time.perf_counter()
                        with lock: ttft.append(first - req.t_submit)
                    if any("error" in e for e in batch): raise RuntimeError(batch)
                    if any("end" in e for e in batch): break
        threads = [threading.Thread(target=client, args=(i,)) for i in range(conc)]
        t0 = time.perf_counter()
        for t in threads: t.start()
        for t in threads: t.join()
        return conc * requests * args.max_tokens / (time.perf_counter() - t0), ttft

    level(1, 1)   # warm-up: first-call allocations and caches are not part of the measurement
    if keep: return level, sched
    out = {c: level(c, args.requests) for c in args.concurrency}
    sched.close()
    return out


@torch.inference_mode()
def step_compare(args, old, model, rows=16, steps=200):
    """The batched decode step alone, old (the old package's step on the old model code) vs now
    (SlotCache.set_rows + model(ids, kv_cache=...)): `rows` rows at different positions, interleaved in blocks of 10
    steps; prints the fastest and the median step (the fastest is what a step costs when nothing else runs)."""
    import statistics
    from bench.bench_engine import old_model
    from nanochat.engine import KVCache
    from nanochat.serve import SlotCache
    om, c = old_model(old, model), model.config
    caches, lengths = {}, [20 + 7 * i for i in range(rows)]
    for name, m, Slot in (("old", om, old.serve.SlotCache), ("now", model, SlotCache)):
        cache = Slot(c, rows, args.seq_len)
        for i, n in enumerate(lengths):
            pc = KVCache(1, c.n_kv_head, n, c.head_dim, c.n_layer)
            m(torch.arange(1, n + 1)[None], kv_cache=pc); cache.load(i, pc)
        caches[name] = cache
    ids = torch.arange(rows) + 3
    if hasattr(old.serve, "decode_step"):   # up to a639103: the server's own copy of the forward
        def old_step(): return old.serve.decode_step(om, caches["old"], ids, torch.tensor(lengths))
    else:                                    # since: the slot cache behind the model's forward, as now
        def old_step():
            caches["old"].set_rows(lengths)
            return om(ids[:, None], kv_cache=caches["old"])[:, -1]
    def new_step():
        caches["now"].set_rows(lengths)
        return model(ids[:, None], kv_cache=caches["now"])[:, -1]
    assert torch.equal(old_step().argmax(-1), new_step().argmax(-1)), "old and new steps disagree"
    t = {"old": [], "now": []}
    for r in range(steps // 10):
        for name, f in ((("old", old_step), ("now", new_step)) if r % 2 == 0 else (("now", new_step), ("old", old_step))):
            for _ in range(10):
                t0 = time.perf_counter(); f(); t[name].append(time.perf_counter() - t0)
    mn = {k: min(v) * 1e3 for k, v in t.items()}; md = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    print(f"batched decode step, {rows} rows at positions {lengths[0]}..{lengths[-1]}: fastest old {mn['old']:.2f} ms, "
          f"now {mn['now']:.2f} ms ({mn['old'] / mn['now']:.2f}x); median old {md['old']:.2f} ms, now {md['now']:.2f} ms "
          f"({md['old'] / md['now']:.2f}x); greedy tokens identical", flush=True)


def compare(args, model, tok):
    """The scheduler and model code at git commit --compare (loaded from git as bench_engine.package_at does) vs now:
    --reps interleaved pairs of the batched policy at each concurrency, in this one process."""
    import statistics
    from bench.bench_engine import package_at, old_model
    old, why = package_at(args.compare, ("attention", "gpt", "engine", "serve"))
    if old is None: print(f"before/after: skipped: {why}"); return
    step_compare(args, old, model)
    runs = {"old": run_direct(args, args.batch, old_model(old, model), tok, old.serve, keep=True),
            "now": run_direct(args, args.batch, model, tok, keep=True)}
    print(f"\nbefore/after: scheduler + model code at {args.compare} vs now, batched (--max-batch {args.batch}), "
          f"{args.reps} interleaved pairs: aggregate tokens/s (median), ratio now/old (median of pairs, [min, max])")
    print(f"{'clients':>7} {'old tok/s':>10} {'new tok/s':>10} {'ratio':>7} {'spread':>14}")
    for c in args.concurrency:
        t = {"old": [], "now": []}
        for r in range(args.reps):
            for name in (("old", "now") if r % 2 == 0 else ("now", "old")): t[name].append(runs[name][0](c, args.requests)[0])
        ratios = [n / o for o, n in zip(t["old"], t["now"])]
        print(f"{c:>7} {statistics.median(t['old']):>10.0f} {statistics.median(t['now']):>10.0f} "
              f"{statistics.median(ratios):>6.2f}x {f'[{min(ratios):.2f}, {max(ratios):.2f}]':>14}", flush=True)
    for level, sched in runs.values(): sched.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--depth", type=int, default=4); a("--vocab", type=int, default=4096); a("--seq-len", type=int, default=512)
    a("--device", default="cpu"); a("--threads", type=int, default=1, help="torch threads (1: the CPU box is shared; raise it on a quiet machine)")
    a("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    a("--requests", type=int, default=2, help="requests each client sends, back to back")
    a("--max-tokens", type=int, default=64)
    a("--batch", type=int, default=32, help="--max-batch of the batched policy")
    a("--direct", action="store_true", help="drive the scheduler in-process, without HTTP")
    a("--compare", default="", help="git commit: time its scheduler + model code against now, interleaved (implies --direct)")
    a("--reps", type=int, default=3, help="interleaved old/new pairs per concurrency with --compare")
    a("--serve", type=int, default=None, help=argparse.SUPPRESS); a("--max-batch", type=int, default=32, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve: return serve(args)
    torch.set_num_threads(args.threads)
    model = tok = None
    if args.direct or args.compare: model, tok = build(args.depth, args.vocab, args.seq_len, args.device)
    if args.compare: return compare(args, model, tok)
    cfg = f"depth {args.depth}, vocab {args.vocab}, {args.device}, {args.threads} threads, {args.max_tokens} tokens/reply, " \
          f"{args.requests} requests per client, {'direct' if args.direct else 'HTTP (SSE)'}"
    print(f"bench_serve: {cfg}", flush=True)
    results = {}
    for name, mb in (("batched", args.batch), ("one-at-a-time", 1)):
        t0 = time.time()
        results[name] = run_direct(args, mb, model, tok) if args.direct else run_http(args, mb)
        print(f"  {name}: measured in {time.time() - t0:.0f} s", flush=True)
    print(f"\n| policy | clients | tokens/s | TTFT p50 | TTFT p95 | vs 1 client | batched / one-at-a-time |")
    print("|---|---|---|---|---|---|---|")
    for name in results:
        base = results[name][args.concurrency[0]][0]
        for c in args.concurrency:
            tps, ttft = results[name][c]
            ratio = tps / results["one-at-a-time"][c][0]
            print(f"| {name} | {c} | {tps:,.0f} | {percentile(ttft, .5) * 1000:,.0f} ms | {percentile(ttft, .95) * 1000:,.0f} ms "
                  f"| {tps / base:.2f}x | {ratio:.2f}x |")
    if 16 in args.concurrency:
        print(f"\nbatched, 16 clients vs 1: {results['batched'][16][0] / results['batched'][args.concurrency[0]][0]:.1f}x "
              f"aggregate tokens/s (goal >= 3x)")


if __name__ == "__main__":
    main()
