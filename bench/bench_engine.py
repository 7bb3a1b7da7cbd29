"""Decode speed of the KV-cache Engine vs the naive path that recomputes the whole prefix every step.

    python -m bench.bench_engine                                   # CPU: depth 4, vocab 8192, prompt 16, 128 new tokens
    python -m bench.bench_engine --device cuda --depth 20 --dtype bfloat16

Both paths start from the same random-weight model and prompt and sample with temperature 1. Each run is split
into the prefill (the prompt's forward pass + the first token) and the decode (every later token); tokens/s
counts decoded tokens over all rows. A decode step of the Engine runs 1 new position per row and reads the
cache; the naive path runs all P + t positions again (so its cost per step grows with t, and the average is
what you get for a generation of --gen tokens). The tokenizer is a stand-in without special tokens, so no row
stops early and every run decodes exactly --gen tokens.

On CUDA it also prints the fraction of the memory-bandwidth limit: a decode step must at least read every weight
(the embedding only for B rows) and the cached keys/values once, so bytes-per-step / time-per-step cannot exceed
the HBM bandwidth. Small batches are bandwidth-bound (or, at small depth, bound by kernel launches).

Before/after: the model, attention and engine code as of git commit --baseline (default a639103, before the model
and the server shared one cached forward and before that step was made lean) is loaded from git history into a
temporary package (nanochat_at_<commit>: its attention.py, gpt.py and engine.py), given the same weights, and timed
on the same prompt, interleaved with the current code (--reps pairs, alternating which goes first; greedy and
temperature 1): the table gives the median decode tokens/s of each, the median of the per-pair speed ratios and its
min-max spread, and the CPU-time ratio (process time, less sensitive to other processes on a shared machine). Both
must produce identical greedy tokens (asserted); sampled tokens differ since the sampler draws one uniform number
per row from per-row generators (the server's scheme) instead of the exponential race. Outside a git checkout that has the commit, this part is skipped.
Measure with OMP_NUM_THREADS=1 (or --threads 1) on a quiet machine; the spread says how quiet it was.
"""
import argparse, pathlib, statistics, subprocess, time, types
import torch

from nanochat.gpt import GPT, GPTConfig, head_probe
from nanochat.engine import Engine, sample_next_token

# peak HBM bandwidth, bytes/s, matched against torch.cuda.get_device_name() (first match wins)
HBM_BANDWIDTH = [("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("GH200", 4.0e12), ("B200", 8.0e12),
                 ("A100-SXM4-80GB", 2.04e12), ("A100 80GB PCIe", 1.94e12), ("A100", 1.555e12), ("L40S", 0.864e12),
                 ("L4", 0.3e12), ("A10", 0.6e12), ("RTX 4090", 1.008e12), ("RTX 3090", 0.936e12), ("V100", 0.9e12)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class NoSpecialTokens:
    "Tokenizer stand-in for timing: no stop tokens and no tool tokens, so generation always runs to max_tokens."
    def __init__(self, vocab_size): self.vocab_size = vocab_size
    def get_vocab_size(self): return self.vocab_size
    def get_bos_token_id(self): return None
    def encode_special(self, name): raise KeyError(name)


def build_model(depth, vocab_size, sequence_len, device, dtype):
    torch.manual_seed(0)
    cfg = GPTConfig.from_depth(depth, vocab_size, sequence_len=sequence_len)
    with torch.device("meta"): model = GPT(cfg)
    model.to_empty(device=device)
    model.init_weights()
    with torch.no_grad():  # init zeroes lm_head and the residual projections; any non-degenerate weights will do
        for p in model.parameters():
            if p.ndim == 2 and not p.any(): p.normal_(0, p.size(1) ** -0.5)
    return model.to(dtype=dtype).eval()


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def package_at(commit, names=("attention", "gpt", "engine")):
    """The modules `names` of the nanochat package as of `commit`, loaded from git history into a temporary package
    (so the old engine runs the old model code too): a namespace of modules, or None (and why) when not possible.
    Every `nanochat/*.py` of that commit goes into the package, so whatever the named modules import is of the same
    commit too."""
    import importlib, sys, tempfile
    root = pathlib.Path(__file__).resolve().parents[1]
    pkg = f"nanochat_at_{commit}"
    if pkg not in sys.modules:
        d = pathlib.Path(tempfile.mkdtemp(prefix="nanochat_old_")) / pkg
        d.mkdir()
        (d / "__init__.py").write_text("")
        git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=True).stdout
        try:
            files = [f for f in git("ls-tree", "--name-only", f"{commit}:nanochat/").split() if f.endswith(".py") and f != "__init__.py"]
            missing = [n for n in names if f"{n}.py" not in files]
            if missing: return None, f"nanochat/{missing[0]}.py does not exist at {commit}"
            for f in files: (d / f).write_text(git("show", f"{commit}:nanochat/{f}"))
        except (OSError, subprocess.CalledProcessError) as e:
            return None, f"cannot read nanochat/ at {commit} from git ({getattr(e, 'stderr', '') or e}".strip() + ")"
        sys.path.insert(0, str(d.parent))
        try: importlib.import_module(pkg)
        finally: sys.path.remove(str(d.parent))
    sys.path.insert(0, str(pathlib.Path(sys.modules[pkg].__file__).parents[1]))
    try: return types.SimpleNamespace(**{n: importlib.import_module(f"{pkg}.{n}") for n in names}), None
    finally: sys.path.pop(0)


def old_model(pkg, model):
    "The same weights in the old package's GPT class (the old forward, attention and rotary code)."
    with torch.device("meta"): m = pkg.gpt.GPT(pkg.gpt.GPTConfig(**vars(model.config)))
    m.to_empty(device=model.get_device()); m.init_rotary()
    m.load_state_dict(model.state_dict())
    return m.to(dtype=model.lm_head.weight.dtype).eval()


def time_engine(engine, prompt, batch, gen, device, temperature=1.0, cpu=False):
    "(prefill seconds, decode seconds, decode steps) for Engine.generate; with cpu=True, decode CPU seconds are added."
    sync(device); t0 = time.perf_counter()
    steps = engine.generate(prompt, num_samples=batch, max_tokens=gen, temperature=temperature, seed=0)
    next(steps); sync(device); t1 = time.perf_counter(); c1 = time.process_time()
    n = sum(1 for _ in steps); sync(device); t2 = time.perf_counter(); c2 = time.process_time()
    return (t1 - t0, t2 - t1, n) + ((c2 - c1,) if cpu else ())


@torch.inference_mode()
def time_naive(model, prompt, batch, gen, device):
    "Same, for the naive loop: every step runs the model over the whole sequence so far (no cache)."
    rng = torch.Generator(device=device).manual_seed(0)
    ids = torch.tensor([prompt] * batch, dtype=torch.long, device=device)
    sync(device); t0 = time.perf_counter()
    ids = torch.cat([ids, sample_next_token(model(ids)[:, -1, :], rng)], dim=1)
    sync(device); t1 = time.perf_counter()
    for _ in range(gen - 1):
        ids = torch.cat([ids, sample_next_token(model(ids)[:, -1, :], rng)], dim=1)
    sync(device); t2 = time.perf_counter()
    return t1 - t0, t2 - t1, gen - 1


def bytes_per_decode_step(model, batch, context, dtype_bytes):
    "Weights read once (the embedding only for `batch` rows) + the keys/values of `context` cached positions."
    c = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) - model.transformer.wte.weight.numel() * model.transformer.wte.weight.element_size()
    weights += batch * c.n_embd * model.transformer.wte.weight.element_size()
    kv = c.n_layer * 2 * batch * c.n_kv_head * context * c.head_dim * dtype_bytes
    return weights, kv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--prompt", type=int, default=16, help="prompt length in tokens")
    ap.add_argument("--gen", type=int, default=128, help="tokens generated per row")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (num_samples)")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--skip-naive", action="store_true", help="only time the engine (the naive path is slow at depth 20)")
    ap.add_argument("--baseline", default="a639103", help="git commit of the model+engine code to compare against ('' to skip)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved old/new timing pairs per setting")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    if args.gen < 2: ap.error("--gen must be >= 2 (one prefill token + at least one decode step)")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    batches = [int(b) for b in args.batch.split(",")]

    model = build_model(args.depth, args.vocab, max(2048, args.prompt + args.gen), device, dtype)
    engine = Engine(model, NoSpecialTokens(args.vocab))
    prompt = torch.randint(0, args.vocab, (args.prompt,), generator=torch.Generator().manual_seed(1)).tolist()
    c = model.config
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f" | depth {c.n_layer}, n_embd {c.n_embd}, {c.n_head} heads, vocab {c.vocab_size}, "
          f"{model.num_params() / 1e6:.1f}M params, {args.dtype} | prompt {args.prompt}, generate {args.gen}")

    if device.type == "cpu":   # the decode step's head in its two forms (decode_head keeps the faster, 03_gpt)
        for B in batches:
            with torch.inference_mode(): t_lin, t_col = head_probe(torch.randn(B, c.n_embd, dtype=dtype), model.lm_head.weight)
            print(f"lm_head of a batch-{B} decode step (head_probe): F.linear {t_lin * 1e6:.0f} us, (W @ x.T).T {t_col * 1e6:.0f} us")

    # warm up both paths (allocator, kernels, lazy init) on a short run
    time_engine(engine, prompt, max(batches), 4, device)
    if not args.skip_naive: time_naive(model, prompt, max(batches), 4, device)

    peak = next((bw for name, bw in HBM_BANDWIDTH if name in torch.cuda.get_device_name(device)), None) if device.type == "cuda" else None
    print(f"{'batch':>5} {'path':>9} {'prefill ms':>11} {'decode tok/s':>13} {'ms/step':>8}")
    speedups = {}
    for B in batches:
        res = {"kv-cache": time_engine(engine, prompt, B, args.gen, device)}
        if not args.skip_naive: res["naive"] = time_naive(model, prompt, B, args.gen, device)
        for path in ("naive", "kv-cache"):
            if path not in res: continue
            pre, dec, n = res[path]
            print(f"{B:>5} {path:>9} {pre * 1e3:>11.1f} {B * n / dec:>13.1f} {dec / n * 1e3:>8.2f}")
        if "naive" in res:
            speedups[B] = (res["naive"][1] / res["naive"][2]) / (res["kv-cache"][1] / res["kv-cache"][2])
        if device.type == "cuda":
            pre, dec, n = res["kv-cache"]
            w, kv = bytes_per_decode_step(model, B, args.prompt + args.gen // 2, torch.finfo(dtype).bits // 8)
            achieved = (w + kv) / (dec / n)
            frac = f", {achieved / peak:.1%} of the {peak / 1e12:.2f} TB/s HBM limit" if peak else " (unknown GPU: no peak bandwidth in the table)"
            print(f"      batch {B}: {(w + kv) / 1e6:.1f} MB read per step ({w / 1e6:.1f} weights + {kv / 1e6:.1f} KV) "
                  f"-> {achieved / 1e9:.0f} GB/s{frac}")
    if speedups:
        print("decode speedup, kv-cache vs naive (same run): " + ", ".join(f"batch {B}: {s:.1f}x" for B, s in speedups.items()))

    if args.baseline: compare_with_baseline(args.baseline, model, engine, prompt, batches, args.gen, args.reps, device)


def compare_with_baseline(commit, model, engine, prompt, batches, gen, reps, device):
    "Old engine vs this one, same model and prompt, interleaved; asserts identical tokens."
    old, why = package_at(commit)
    if old is None:
        print(f"\nbefore/after: skipped: {why}"); return
    old_engine = old.engine.Engine(old_model(old, model), engine.tokenizer)
    print(f"\nbefore/after: model + engine code at {commit} vs now, {reps} interleaved pairs, decode tok/s (median) and ratio now/old "
          f"(median of pairs, [min, max]); cpu ratio = old/new CPU seconds of the decode; best = fastest new / fastest old run "
          f"(what each costs when nothing else runs: the figure a busy machine disturbs least)")
    print(f"{'batch':>5} {'temp':>5} {'old tok/s':>10} {'new tok/s':>10} {'ratio':>7} {'spread':>14} {'cpu ratio':>9} {'spread':>14} {'best':>6} {'tokens':>10}")
    for B in batches:
        for temp in (0.0, 1.0):
            cols_old = list(old_engine.generate(prompt, num_samples=B, max_tokens=gen, temperature=temp, seed=0))
            cols_new = list(engine.generate(prompt, num_samples=B, max_tokens=gen, temperature=temp, seed=0))
            same = cols_old == cols_new   # greedy must match; sampling changed its draw (one uniform per row)
            assert same or temp > 0, f"batch {B}, greedy: the engines' outputs differ"
            t_old, t_new, c_old, c_new = [], [], [], []
            for r in range(reps):   # alternate which goes first, so a drift in machine load hits both alike
                pair = [(old_engine, t_old, c_old), (engine, t_new, c_new)][::1 if r % 2 == 0 else -1]
                for eng, out, cpu in pair:
                    _, dec, n, cpu_s = time_engine(eng, prompt, B, gen, device, temp, cpu=True)
                    out.append(B * n / dec); cpu.append(cpu_s)
            ratios = [n / o for o, n in zip(t_old, t_new)]
            cpu_ratios = [o / n for o, n in zip(c_old, c_new)]
            print(f"{B:>5} {temp:>5.1f} {statistics.median(t_old):>10.1f} {statistics.median(t_new):>10.1f} "
                  f"{statistics.median(ratios):>6.2f}x {f'[{min(ratios):.2f}, {max(ratios):.2f}]':>14} "
                  f"{statistics.median(cpu_ratios):>6.2f}x {f'[{min(cpu_ratios):.2f}, {max(cpu_ratios):.2f}]':>14} "
                  f"{max(t_new) / max(t_old):>5.2f}x {'identical' if same else 'differ':>10}")

if __name__ == "__main__":
    main()
