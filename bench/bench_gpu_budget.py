"""Will every stage of speedrun.sh / run1000.sh fit in an 80 GB H100? Peak memory per rank and step time, without a GPU.

    python -m bench.bench_gpu_budget                         # both scripts (d20 and d32), one table each (~4 min)
    python -m bench.bench_gpu_budget --script run1000 --check    # exit 1 if a stage overflows (or has < 10% headroom)
    python -m bench.bench_gpu_budget --script run1000 --depth 32 --device-batch-size 64 --check   # "does this fit?"
    python -m bench.bench_gpu_budget --bench-train --depth 20 --batch-size 16 --world 1   # what gpu_check.sh predicts

Method. Each stage runs ONE REAL STEP of the course's own code (GPT.forward, the chunked soft-capped loss, backward,
`clip_grad_norm`, the AdamW + Muon `step`, KVCache) on *fake* tensors (torch's FakeTensorMode: shapes, dtypes and
devices, no data), under bf16 autocast as on CUDA, at the scripts' real flags. A `TorchDispatchMode` (`LiveBytes`)
sees every tensor an operation creates and, through a weak reference to its storage, when it is freed; the live
bytes after every operation give the peak. The parameters, buffers and optimizer state are registered up front, so
the peak is everything the rank holds. What is emulated rather than run:
  * 8 ranks: `torch.distributed` is replaced, inside `nanochat.optim` only, by a stand-in for rank 0 of 8 (rank 0 owns
    the first matrix of every Muon chunk: the busiest rank). Its collectives allocate what NCCL allocates on the
    caching allocator: a flat buffer of world x size for the list forms (`reduce_scatter`, `all_gather`), held until
    `wait()`; the tensor forms write in place.
  * weights as on CUDA: fp32 parameters with a bf16 `wte` (as `init_weights` / `build_model` do on CUDA).
  * attention: fake CPU tensors take torch's fused flash-attention path (out + log-sum-exp saved), the memory of
    the CUDA flash kernel; the math path would hold every (T, T) score matrix.
  * `torch.compile` (on by default on CUDA in base_train and mid_train) is not run here: inductor recomputes cheap
    element-wise ops in the backward, so it saves fewer activations than eager. The "compiled" column takes the eager
    activations x compile_factor(width), measured by `--measure-compile` (AOTAutograd with inductor's decompositions
    and min-cut partitioner on real CPU tensors, saved tensors counted) at d20's and d32's widths, or the larger
    ratio measured on a GPU (GPU_COMPILE_FACTOR); the verdict uses it for the compiled stages, the eager figure for
    the others.
Then on top of the simulated peak: the caching allocator's fragmentation (FRAGMENTATION of the peak; the scripts
set expandable_segments:True) and RUNTIME_GB for the CUDA context, cuBLAS workspaces and NCCL's own buffers.
Step time: FLOPs per step from GPT.estimate_flops x tokens at MFU of the H100's 989 TFLOP/s bf16 dense peak; decode
steps are bound by memory bandwidth: bytes of weights + KV cache read per step at HBM_EFFICIENCY x 3.35 TB/s.
"""
import argparse, math, os, re, shlex, sys, time, warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

import nanochat.optim as optim
from nanochat.engine import KVCache
from nanochat.gpt import GPT, GPTConfig
from nanochat.optim import setup_optimizers

# the attention's generation path keys its stacked q/k/v weights by data pointer; on fake tensors that pointer is
# meaningless but harmless (each fake model is used once), and torch warns about every access
warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 1e9
CAPACITY_GB = 80.0             # an H100 "80 GB" (torch reports ~85.0e9 bytes: the rest is a margin of our own)
MIN_HEADROOM = 0.10
FRAGMENTATION = 0.05           # of the simulated peak, for the caching allocator (expandable segments on)
RUNTIME_GB = 1.5               # CUDA context + cuBLAS workspaces + NCCL buffers, not seen by the simulation
COMPILE_FACTORS = {1280: 0.735, 2048: 0.793}   # compiled / eager saved activations by width, from --measure-compile
# The same ratio on a GPU, from the first gpu_check.sh run (one H200, torch 2.11): bench_train's compiled peak
# (max_memory_allocated) against this simulation's eager peak and activations gives 0.814 at width 768 (d12, B=32:
# 27.5 GB measured) and 0.815 at 1280 (d20, B=16: 39.7 GB); the CPU line predicted 0.696 and 0.735, 12% and 8% low.
# CUDA inductor keeps more than the CPU partitioner shows; the budget takes the larger of the two.
GPU_COMPILE_FACTOR = 0.815

def compile_factor(n_embd):
    """Compiled / eager saved activations at width n_embd: the CPU measurements' line in the width (clamped to
    [0.5, 1]), or the ratio measured on a GPU where that is larger."""
    (w0, f0), (w1, f1) = sorted(COMPILE_FACTORS.items())
    return max(GPU_COMPILE_FACTOR, min(1.0, max(0.5, f0 + (f1 - f0) * (n_embd - w0) / (w1 - w0))))
PEAK_FLOPS, MFU = 989e12, 0.40     # H100 SXM bf16 dense; the course's stated MFU for the budget
HBM_BW, HBM_EFFICIENCY = 3.35e12, 0.6
VOCAB = 65536                  # the scripts' tokenizer (tok_train --vocab-size=65536)


# ---------------------------------------------------------------------------------------------------- accounting
class LiveBytes(TorchDispatchMode):
    """Live bytes of every storage created inside the `with` block, plus those registered with `track`; and their
    peak. Frees are found by scanning the weak references, which is only needed when the running total (allocations
    added, frees not yet subtracted: an upper bound) passes the peak so far: exact, and fast away from the peak."""
    def __init__(self):
        super().__init__()
        self.live, self.peak, self.total = {}, 0, 0

    def track(self, tensors):
        for t in tensors:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st._cdata not in self.live:
                    self.live[st._cdata] = (StorageWeakRef(st), st.nbytes()); self.total += st.nbytes()
        if self.total > self.peak: self.peak = max(self.peak, self.now())

    def now(self):
        "Bytes live right now (drops the freed storages)."
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        self.total = sum(n for _, n in self.live.values())
        return self.total

    def reset_peak(self): self.peak = self.now()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.track(torch.utils._pytree.tree_leaves(out))
        return out


class _Work:
    "A finished collective; holds NCCL's flat staging buffer (if any) until `wait()`, as the real one does."
    def __init__(self, buf=None): self.buf = buf
    def wait(self): self.buf = None


class FakeDist:
    "What `nanochat.optim` uses of torch.distributed, for rank `rank` of `world`: collectives only allocate."
    ReduceOp = torch.distributed.ReduceOp
    def __init__(self, world, rank=0): self.world, self.rank = world, rank
    def is_available(self): return True
    def is_initialized(self): return True
    def get_rank(self): return self.rank
    def get_world_size(self): return self.world
    def get_backend(self): return "nccl"
    def reduce_scatter_tensor(self, out, inp, op=None, async_op=False): return _Work()
    def all_gather_into_tensor(self, out, inp, async_op=False): return _Work()
    def all_reduce(self, t, op=None, async_op=False): return _Work()
    def reduce_scatter(self, out, inputs, op=None, async_op=False):   # NCCL flattens the list into one buffer
        return _Work(torch.empty(len(inputs) * inputs[0].numel(), dtype=inputs[0].dtype, device=inputs[0].device))
    def all_gather(self, outs, inp, async_op=False):
        return _Work(torch.empty(len(outs) * inp.numel(), dtype=inp.dtype, device=inp.device))


@contextmanager
def simulated(world=8, fake=True):
    """Fake tensors on the CPU with bf16 autocast, `world` ranks for the optimizers, and GPT.forward's token-id range
    check skipped (it reads data, which fake tensors do not have: it is skipped under torch.compile on CUDA too)."""
    real_is_compiling, real_dist = torch.compiler.is_compiling, optim.dist
    def is_compiling():
        return sys._getframe(1).f_globals.get("__name__") == "nanochat.gpt" or real_is_compiling()
    if fake: torch.compiler.is_compiling = is_compiling
    optim.dist = FakeDist(world)
    try:
        with FakeTensorMode() if fake else nullcontext(), torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    finally:
        torch.compiler.is_compiling, optim.dist = real_is_compiling, real_dist


def build_model(depth, seq_len, vocab=VOCAB, cuda_dtypes=True):
    "The real GPT, fake parameters: fp32, with a bf16 embedding as on CUDA."
    model = GPT(GPTConfig.from_depth(depth, vocab, seq_len))
    if cuda_dtypes:   # (module.to() cannot swap fake parameters in place: assign a new one)
        wte = model.transformer.wte
        wte.weight = torch.nn.Parameter(wte.weight.detach().to(torch.bfloat16))
    return model


class CPUAllocatorPeak:
    """The real peak of the CPU allocator over a `with` block, from torch.profiler's memory events: c10's CPU allocator
    reports every allocation and free (size and time) to the profiler when profile_memory=True, so the running sum
    of those events is the allocator's live-bytes curve; `peak` is its maximum above the level at entry. Sound where
    tracemalloc (Python objects only) and RSS (pages, the Python heap, noise) are not. Measured after the block."""
    def __enter__(self):
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        self.prof.__enter__(); return self

    def __exit__(self, *exc):
        self.prof.__exit__(*exc)
        def walk(evs):
            for e in evs: yield e; yield from walk(e.children)
        allocs = sorted((e for e in walk(self.prof.profiler.kineto_results.experimental_event_tree())
                         if e.tag == torch._C._profiler._EventType.Allocation and e.extra_fields.device.type == "cpu"),
                        key=lambda e: e.start_time_ns)
        live = self.peak = 0
        for e in allocs:
            live += e.extra_fields.alloc_size; self.peak = max(self.peak, live)


def model_tensors(model, optimizers=()):
    out = list(model.parameters()) + list(model.buffers()) + [p.grad for p in model.parameters() if p.grad is not None]
    for opt in optimizers:
        for st in opt.state.values(): out += [v for v in st.values() if isinstance(v, torch.Tensor)]
    return out


def nbytes(ts): return sum(t.numel() * t.element_size() for t in ts)


@dataclass
class Peak:
    "Simulated peak of one stage and its parts (bytes), and the step time."
    stage: str
    flags: str
    peak: int                 # everything live at the worst moment, eager
    params: int = 0
    grads: int = 0
    optim_state: int = 0
    kv_cache: int = 0
    activations: int = 0      # saved by the forward for the backward (eager), 0 for inference stages
    start: int = 0            # live at the start of the measured step (parameters, optimizer state, ...)
    width: int = 1280         # n_embd: the compile factor depends on it
    step_s: float = 0.0
    step_what: str = ""
    notes: list = field(default_factory=list)

    @property
    def compiled(self): return self.peak - (1 - compile_factor(self.width)) * self.activations

    def need_gb(self, compiled=False):
        "GB per rank on the device: simulated peak + fragmentation + CUDA runtime."
        p = self.compiled if compiled else self.peak
        return p * (1 + FRAGMENTATION) / GB + RUNTIME_GB

    def headroom(self, compiled=False): return 1 - self.need_gb(compiled) / CAPACITY_GB


def _train_step_time(model, tokens_per_rank):
    return model.estimate_flops() * tokens_per_rank / (MFU * PEAK_FLOPS)


def simulate_train(stage, depth, B, T, world, grad_accum, loss_reduction="mean", flags="", vocab=None, fake=True,
                   around_step=nullcontext):
    """Two optimizer steps of `scripts.base_train`'s `train_step` (micro-steps: forward + chunked loss + backward,
    the global grad norm, AdamW + Muon at `world` ranks, zero_grad); the peak of the second, when the optimizer state
    exists. Micro-steps 2..n of a step hold the same memory, so at most 2 are simulated. `fake=False` runs the same on
    real CPU tensors (tests); `around_step()` is entered around the measured step (e.g. a profiler)."""
    from nanochat.pretrain import train_step
    micro, V = min(grad_accum, 2), vocab or VOCAB
    with simulated(world, fake):
        model = build_model(depth, T, V)
        optimizers = setup_optimizers(model)
        for group in optimizers[1].param_groups: group["ns_dtype"] = torch.bfloat16
        x = torch.randint(0, V, (B, T)); y = torch.randint(0, V, (B, T))
        fwd = []
        class Loss(torch.nn.Module):   # pretraining / midtraining: the mean loss; sft / rl: sums over tokens
            def __init__(s): super().__init__(); s.m = model
            def forward(s, x, y):
                before = lb.now(); loss = s.m(x, y, loss_reduction=loss_reduction)
                fwd.append(lb.now() - before)   # what the forward leaves for the backward: the saved activations
                return loss
        with LiveBytes() as lb:
            lb.track(model_tensors(model))
            autocast = torch.autocast("cpu", dtype=torch.bfloat16)
            train_step(Loss(), optimizers, ((x, y) for _ in range(1)), 1, 0, 100, autocast=autocast)
            lb.track(model_tensors(model, optimizers)); fwd.clear()
            start = lb.now(); lb.reset_peak()
            with around_step():
                train_step(Loss(), optimizers, ((x, y) for _ in range(micro)), micro, 1, 100, autocast=autocast)
            peak = lb.peak
        params = nbytes(model.parameters())
        state = nbytes([v for opt in optimizers for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)])
        tokens = B * T * grad_accum
        return Peak(stage, flags, peak, params=params, grads=params, optim_state=state, activations=fwd[0], start=start,
                    width=model.config.n_embd,
                    step_s=_train_step_time(model, tokens), step_what=f"optimizer step, {tokens:,} tok/rank")


def simulate_forward(stage, depth, B, T, mode="loss", flags="", step_what="forward"):
    """One no-grad forward of (B, T) tokens. mode: 'loss' (the chunked loss per token: bpb), 'logits' (all (B, T, V)
    logits: CORE's `score_sequences`), 'last' (chat_eval's `last_position_logits`: the head sees one position per row)."""
    from nanochat.chat_eval import last_position_logits
    with simulated():
        model = build_model(depth, T)
        x = torch.randint(0, VOCAB, (B, T))
        with LiveBytes() as lb, torch.no_grad():
            lb.track(model_tensors(model))
            if mode == "loss": out = model(x, x, loss_reduction="none")
            elif mode == "logits": out = model(x)
            else: out = last_position_logits(model, x, [T - 1] * B)
            del out
            peak = lb.peak
        t = model.estimate_flops() / 3 * B * T / (MFU * PEAK_FLOPS)
        return Peak(stage, flags, peak, params=nbytes(model.parameters()), step_s=t, step_what=f"{step_what}, {B}x{T} tokens")


def _decode_time(param_bytes, cache_bytes): return (param_bytes + cache_bytes) / (HBM_EFFICIENCY * HBM_BW)


def simulate_generate(stage, depth, T, rows, prompt, capacity, flags="", prefill_rows=1):
    """KV-cache generation as the Engine runs it: the prompt prefilled (`prefill_rows` rows), a cache of `rows` rows and
    `capacity` positions (bf16 under autocast), then one decode step of every row at the last position."""
    with simulated():
        model = build_model(depth, T)
        c = model.config
        with LiveBytes() as lb, torch.inference_mode():
            lb.track(model_tensors(model))
            cache = KVCache(rows, c.n_kv_head, capacity, c.head_dim, c.n_layer)
            if prefill_rows != rows:   # the Engine prefills one row, then copies it into a cache of `rows` rows
                pc = KVCache(prefill_rows, c.n_kv_head, prompt, c.head_dim, c.n_layer)
                model(torch.randint(0, VOCAB, (prefill_rows, prompt)), kv_cache=pc)
                cache.kv = torch.empty((c.n_layer, 2, rows, c.n_kv_head, capacity, c.head_dim), dtype=pc.kv.dtype)
                cache.kv[:, :, :, :, :prompt] = pc.kv[:, :, :1]
                cache.pos = prompt; del pc
            else:
                model(torch.randint(0, VOCAB, (rows, prompt)), kv_cache=cache)
            cache.pos = capacity - 1
            model(torch.randint(0, VOCAB, (rows, 1)), kv_cache=cache)
            peak, kv = lb.peak, cache.kv.numel() * cache.kv.element_size()
        params = nbytes(model.parameters())
        return Peak(stage, flags, peak, params=params, kv_cache=kv, step_s=_decode_time(params, kv),
                    step_what=f"decode step, {rows} rows x {capacity} positions")


def simulate_serve(stage, depth, T, max_batch, context, flags=""):
    """chat_web: the Scheduler's SlotCache (max_batch slots x context positions, bf16), one prompt of `context` tokens
    prefilled through a batch-1 KVCache (as `Scheduler` admits a request), then a decode forward of every slot."""
    from nanochat.serve import SlotCache
    with simulated():
        model = build_model(depth, T)
        c = model.config
        with LiveBytes() as lb, torch.inference_mode():
            lb.track(model_tensors(model))
            slots = SlotCache(c, max_batch, context)
            pc = KVCache(1, c.n_kv_head, context, c.head_dim, c.n_layer)
            model(torch.randint(0, VOCAB, (1, context)), kv_cache=pc)
            pc.pos = context // 2   # load() copies the prompt's positions; the cache tensor is allocated on the first
            slots.load(0, pc); del pc
            big = KVCache(max_batch, c.n_kv_head, context, c.head_dim, c.n_layer)   # a decode forward of every slot:
            big.kv, big.pos = slots.kv.view(c.n_layer, 2, max_batch, c.n_kv_head, context, c.head_dim), context - 1
            model(torch.randint(0, VOCAB, (max_batch, 1)), kv_cache=big)           # reads the whole SlotCache
            peak, kv = lb.peak, slots.kv.numel() * slots.kv.element_size()
        params = nbytes(model.parameters())
        return Peak(stage, flags, peak, params=params, kv_cache=kv, step_s=_decode_time(params, kv),
                    step_what=f"decode step, {max_batch} users x {context} positions")


def measure_compile_factor(n_embd=1280, n_layer=2, T=2048, vocab=4096):
    """(eager, compiled) bytes of the activations one forward saves for the backward, on real CPU tensors at d20's
    width: torch.compile through AOTAutograd with inductor's decompositions and its min-cut partitioner (which picks
    what the forward saves), the graphs then run as plain aten ops. Counted with saved-tensor hooks (unique storages,
    parameters excluded). ~45 s on one CPU core."""
    import functools
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    from torch._inductor.decomposition import select_decomp_table
    torch.manual_seed(0)
    cfg = GPTConfig(sequence_len=T, vocab_size=vocab, n_layer=n_layer, n_head=n_embd // 128, n_kv_head=n_embd // 128, n_embd=n_embd)
    model = GPT(cfg); model.init_weights()
    model.transformer.wte.weight = torch.nn.Parameter(model.transformer.wte.weight.detach().bfloat16())
    boxed = lambda gm, ex: torch._functorch.aot_autograd.make_boxed_func(gm)
    backend = aot_autograd(fw_compiler=boxed, bw_compiler=boxed, decompositions=select_decomp_table(),
                           partition_fn=functools.partial(min_cut_rematerialization_partition, compiler="inductor"))
    compiled = torch.compile(model, backend=backend, dynamic=False)
    x = torch.randint(0, vocab, (1, T))
    own = {t.untyped_storage()._cdata for t in list(model.parameters()) + list(model.buffers())}
    def saved(m):
        seen = {}
        def pack(t):
            st = t.untyped_storage()
            if st._cdata not in own: seen[st._cdata] = st.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = m(x, x)
        loss.backward(); model.zero_grad(set_to_none=True)
        return sum(seen.values())
    saved(compiled)   # compile first
    return saved(model), saved(compiled)


# ------------------------------------------------------------------------------------------- the scripts' flags
ARRAYS = ("TOK", "BASE", "LOSS", "CORE", "MID", "SFT", "RL", "EVAL")

def script_flags(script, depth=None, device_batch_size=None):
    """The real run's flags of every stage, read from scripts/speedrun.sh (and the sizing run1000.sh passes it):
    {array name: [flags]} plus DEPTH and DEVICE_BATCH_SIZE. Only the lines before the dry-run block are read."""
    if script not in ("speedrun", "run1000"): raise ValueError(f"script must be speedrun or run1000, got {script!r}")
    text = open(os.path.join(REPO, "scripts", "speedrun.sh")).read()
    env = {k: v for k, v in re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}", text, re.M)}   # DEPTH=${DEPTH:-20} ...
    if script == "run1000":
        line = next(l for l in open(os.path.join(REPO, "scripts", "run1000.sh")) if "exec bash scripts/speedrun.sh" in l)
        env.update(re.findall(r"(\w+)=(\S+)", line.split("exec")[0]))
    if depth is not None: env["DEPTH"] = str(depth)
    if device_batch_size is not None: env["DEVICE_BATCH_SIZE"] = str(device_batch_size)
    env["TAG"] = f"d{env['DEPTH']}"
    real = text.split('if [ "$DRY_RUN" = 1 ]')[0]
    out = {"DEPTH": int(env["DEPTH"]), "DEVICE_BATCH_SIZE": int(env["DEVICE_BATCH_SIZE"])}
    for name in ARRAYS:
        m = re.search(rf"^{name}=\(([^)]*)\)", real, re.M)
        if m is None: raise ValueError(f"scripts/speedrun.sh has no {name}=(...) line: the budget cannot read its flags")
        body = re.sub(r"\$\{?WANDB_\w+\}?", "", m.group(1))
        body = re.sub(r"\$\{?(\w+)\}?", lambda v: env.get(v.group(1), ""), body)
        out[name] = shlex.split(body)
    return out


def stage_settings(flags, world=8, max_seq_len=None, web_users=None):
    "Each stage's shapes, from the real argument parsers applied to the script's flags."
    from nanochat import pretrain, evaluate, midtrain, sft, rl, chat_eval, api
    base = pretrain.parse_args(flags["BASE"])
    T = max_seq_len or base.max_seq_len
    loss_p = argparse.ArgumentParser(add_help=False)   # base_loss's own parser is built inside loss_main
    loss_p.add_argument("--device-batch-size", "--device_batch_size", type=int, default=32)
    loss, _ = loss_p.parse_known_args(flags["LOSS"])
    core = evaluate.get_parser().parse_args(flags["CORE"])
    mid = midtrain.get_parser().parse_args(flags["MID"])
    sf = sft.get_parser().parse_args(flags["SFT"])
    r = rl.get_parser().parse_args(flags["RL"])
    ev = chat_eval.get_parser().parse_args(["-i", "sft"] + flags["EVAL"])
    web = api.build_parser().parse_args([])
    vocab = int(next((f.split("=")[1] for f in flags["TOK"] if f.startswith("--vocab-size=")), VOCAB))
    def accum(total, B, T_): return max(1, total // (B * T_ * world))
    return dict(depth=base.depth, T=T, vocab=vocab, world=world,
                base=dict(B=base.device_batch_size, accum=accum(base.total_batch_size, base.device_batch_size, T)),
                loss=dict(B=loss.device_batch_size), core=dict(tokens=min(core.batch_size, 32768 // T) * T),
                mid=dict(B=mid.device_batch_size, T=mid.max_seq_len or T, accum=accum(mid.total_batch_size, mid.device_batch_size, mid.max_seq_len or T)),
                eval=dict(B=ev.batch_size, new=ev.max_new_tokens, samples=ev.num_samples),
                sft=dict(B=sf.device_batch_size, T=sf.max_seq_len or T, accum=max(1, sf.target_examples_per_step // (sf.device_batch_size * world))),
                rl=dict(B=r.device_batch_size, samples=r.num_samples, new=r.max_new_tokens),
                web=dict(users=web_users or web.max_batch, context=web.context or T))


RL_PROMPT = 512   # assumption: a GSM8K question rendered as a chat prompt is < 512 tokens

STAGES = ("base_train", "base_loss", "base_eval", "mid_train", "chat_eval", "chat_sft", "chat_rl", "chat_web")

def budget(s, stages=STAGES):
    "Simulate the named stages (default: all) at the settings `s` (from `stage_settings`). -> list of Peak."
    global VOCAB
    d, T, w, VOCAB = s["depth"], s["T"], s["world"], s["vocab"]
    bad = [x for x in stages if x not in STAGES]
    if bad: raise ValueError(f"unknown stage(s) {bad}: choose from {', '.join(STAGES)}")
    rows = []
    if "base_train" in stages:
        b = s["base"]
        rows.append(simulate_train("base_train", d, b["B"], T, w, b["accum"],
                                   flags=f"--depth={d} --device-batch-size={b['B']} T={T} x{b['accum']} micro-steps"))
    if "base_loss" in stages:
        rows.append(simulate_forward("base_loss", d, s["loss"]["B"], T, "loss", f"--device-batch-size={s['loss']['B']}", "bpb forward"))
    if "base_eval" in stages:
        n = s["core"]["tokens"] // T
        rows.append(simulate_forward("base_eval (CORE)", d, n, T, "logits", f"{n} seqs x {T} (32,768-token cap)",
                                     "CORE forward, full logits"))
    if "mid_train" in stages:
        m = s["mid"]
        rows.append(simulate_train("mid_train", d, m["B"], m["T"], w, m["accum"], flags=f"--device-batch-size={m['B']} T={m['T']} x{m['accum']}"))
    if "chat_eval" in stages:
        e = s["eval"]
        rows.append(simulate_forward("chat_eval (categorical)", d, e["B"], T, "last", f"-b {e['B']}, prompts <= {T}", "forward"))
        rows.append(simulate_generate("chat_eval (generative)", d, T, e["samples"], T - e["new"], T,
                                      f"-n {e['samples']}, prompt + {e['new']} <= {T}"))
    if "chat_sft" in stages:
        f = s["sft"]
        rows.append(simulate_train("chat_sft", d, f["B"], f["T"], w, f["accum"], "sum", f"--device-batch-size={f['B']}, rows padded to {f['T']}"))
    if "chat_rl" in stages:
        r = s["rl"]; L = min(RL_PROMPT + r["new"], T)
        upd = simulate_train("chat_rl update", d, r["B"], L, w, 2, "sum", f"--device-batch-size={r['B']}, rows <= {L}")
        roll = simulate_generate("chat_rl rollouts", d, T, r["B"], RL_PROMPT, L, f"{r['B']} of {r['samples']} samples, {RL_PROMPT} + {r['new']} tok")
        roll.peak += upd.optim_state; roll.optim_state = upd.optim_state   # the optimizer state stays resident while sampling
        rows += [roll, upd]
    if "chat_web" in stages:
        wb = s["web"]
        rows.append(simulate_serve("chat_web", d, T, wb["users"], wb["context"], f"--max-batch={wb['users']} users, {wb['context']} positions"))
    return rows


COMPILED = {"base_train", "mid_train"}   # torch.compile'd on CUDA by default; the others run eager

def verdicts(rows):
    "(stage, need GB, headroom, message or None) per row: the figure that applies (compiled where the stage compiles)."
    out = []
    for p in rows:
        need, head = p.need_gb(p.stage in COMPILED), p.headroom(p.stage in COMPILED)
        msg = None
        if need > CAPACITY_GB:
            msg = f"stage {p.stage} overflows {CAPACITY_GB:.0f} GB by {need - CAPACITY_GB:.1f} GB at flags {p.flags}"
        elif head < MIN_HEADROOM:
            msg = f"stage {p.stage} fits but leaves only {100 * head:.0f}% headroom (< {100 * MIN_HEADROOM:.0f}%) at flags {p.flags}"
        out.append((p, need, head, msg))
    return out


def print_table(rows, title):
    print(f"\n{title}")
    print(f"{'stage':<24} {'GB/rank':>8} {'compiled':>8} {'headroom':>8} {'params':>7} {'grads':>6} {'optim':>6} {'acts':>6} "
          f"{'KV':>6}  {'step time':>10}  flags")
    for p, need, head, msg in verdicts(rows):
        comp = f"{p.need_gb(True):8.1f}" if p.activations else f"{'-':>8}"
        mark = " <- OVERFLOW" if need > CAPACITY_GB else (" <- < 10%" if head < MIN_HEADROOM else "")
        print(f"{p.stage:<24} {p.need_gb():8.1f} {comp} {100 * head:7.0f}% {p.params / GB:7.2f} {p.grads / GB:6.2f} "
              f"{p.optim_state / GB:6.2f} {p.activations / GB:6.1f} {p.kv_cache / GB:6.2f}  {_fmt_s(p.step_s):>10}  "
              f"{p.flags} ({p.step_what}){mark}")
    print(f"headroom vs {CAPACITY_GB:.0f} GB: of the compiled figure for {' and '.join(sorted(COMPILED))} (torch.compile is on by "
          "default on CUDA there), of the eager one elsewhere; params/grads/optim/acts/KV: simulated GB")


def _fmt_s(s): return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def fitting_batch(p, compiled):
    """The largest device batch (halving the current one, read from the flags) at which training stage `p` keeps the
    minimum headroom, extrapolating linearly in the batch: what is not parameters, gradients or optimizer state
    (activations, the loss, their gradients) scales with the rows per forward. None if not a training stage."""
    m = re.search(r"--device-batch-size=(\d+)", p.flags)
    if not p.activations or not m: return None
    B, static = int(m.group(1)), p.params + p.grads + p.optim_state
    peak = p.compiled if compiled else p.peak
    while B > 1:
        B //= 2
        dyn = (peak - static) * B / int(m.group(1))
        if ((static + dyn) * (1 + FRAGMENTATION) / GB + RUNTIME_GB) <= (1 - MIN_HEADROOM) * CAPACITY_GB: return B
    return None


def full_optimizer_state(model):
    "Bytes of the whole optimizer state, unsharded: AdamW's m and v for wte (bf16) and lm_head (fp32), Muon's fp32 momentum."
    wte, head = model.transformer.wte.weight.numel(), model.lm_head.weight.numel()
    return 2 * 2 * wte + 2 * 4 * head + 4 * sum(p.numel() for p in model.transformer.h.parameters())


def fsdp2_rows(depth, B, T=2048, ranks=(8, 16), total_batch=524288):
    """Per-rank memory of a training step under ZeRO-2 (this course's optimizers) and under FSDP2 (fully_shard per Block
    and at the root), from ONE simulated ZeRO-2 step at 8 ranks, re-accounted: parameters, gradients and optimizer
    state divided by the ranks; FSDP2 adds the bf16 parameters of two gathered blocks (the one computing, the one
    prefetched), the gathered lm_head, and one block's unsharded fp32 gradients before their reduce-scatter.
    Activations as simulated (compiled: eager x compile_factor(width)). -> list of dicts."""
    p = simulate_train(f"d{depth}", depth, B, T, 8, 2)
    with FakeTensorMode():
        model = build_model(depth, T)
    full, block = full_optimizer_state(model), nbytes(model.transformer.h[0].parameters())
    dyn = p.compiled - (p.params + p.grads + p.optim_state)   # activations and transients of the compiled step
    out = []
    for n in ranks:
        zero2 = p.params + p.grads + full / n + dyn
        # FSDP2 with MixedPrecisionPolicy(param_dtype=bf16): no autocast cache of bf16 weight copies (the simulated
        # eager step holds one of every block matrix and lm_head until the backward), gathered blocks instead
        casts = (nbytes(model.transformer.h.parameters()) + nbytes(model.lm_head.parameters())) // 2
        gathered = 2 * block // 2 + model.lm_head.weight.numel() * 2 + block   # 2 bf16 blocks, bf16 lm_head, fp32 grads
        fsdp = (p.params + p.grads + full) / n + gathered + dyn - casts
        for name, b in (("ZeRO-2", zero2), ("FSDP2", fsdp)):
            need = b * (1 + FRAGMENTATION) / GB + RUNTIME_GB
            out.append(dict(depth=depth, B=B, ranks=n, scheme=name, need_gb=need, headroom=1 - need / CAPACITY_GB,
                            accum=max(1, total_batch // (B * T * n)), params_gb=p.params / GB, state_full_gb=full / GB,
                            acts_gb=dyn / GB))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.bench_gpu_budget", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", choices=["speedrun", "run1000"], action="append", help="default: both")
    ap.add_argument("--check", action="store_true", help="exit 1 if a stage overflows 80 GB or keeps < 10%% headroom")
    ap.add_argument("--depth", type=int, help="override the script's DEPTH")
    ap.add_argument("--device-batch-size", "--device_batch_size", type=int, help="override the script's DEVICE_BATCH_SIZE")
    ap.add_argument("--max-seq-len", "--max_seq_len", type=int, help="override the context length T")
    ap.add_argument("--world", type=int, default=8, help="ranks (GPUs) the optimizer state is sharded over")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of the stages")
    ap.add_argument("--web-users", type=int, help="chat_web: concurrent users decoded together (default: its --max-batch)")
    ap.add_argument("--bench-train", action="store_true", help="predict bench.bench_train's step instead (gpu_check.sh)")
    ap.add_argument("--batch-size", type=int, default=32, help="--bench-train: rows per step")
    ap.add_argument("--vocab", type=int, default=VOCAB, help="--bench-train: vocabulary size")
    ap.add_argument("--fsdp2", action="store_true", help="ZeRO-2 vs FSDP2 per rank at d32 / d40, 8 and 16 ranks")
    ap.add_argument("--measure-compile", action="store_true", help="measure the compiled/eager activation ratio (~3 min)")
    args = ap.parse_args(argv)
    for name in ("depth", "device_batch_size", "max_seq_len", "world", "web_users", "batch_size", "vocab"):
        v = getattr(args, name)
        if v is not None and v < 1: ap.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.depth is not None:
        try: GPTConfig.from_depth(args.depth, 256)
        except ValueError as e: ap.error(str(e))
    if args.measure_compile:
        for width in sorted(COMPILE_FACTORS):
            e, c = measure_compile_factor(width)
            print(f"saved activations, 2 layers of width {width}, T=2048: eager {e / 1e6:.1f} MB, compiled {c / 1e6:.1f} MB: "
                  f"factor {c / e:.3f} (COMPILE_FACTORS[{width}] = {COMPILE_FACTORS[width]})", flush=True)
        return 0
    if args.fsdp2:
        print(f"{'model':<6} {'B x T':>8} {'ranks':>5} {'accum':>5} {'scheme':<7} {'GB/rank':>8} {'headroom':>8}   "
              "(compiled; params fp32, optimizer state unsharded = 'state')")
        for depth, B in ((32, 8), (40, 4), (40, 8)):
            for r in fsdp2_rows(depth, B):
                print(f"d{depth:<5} {B:>3} x 2048 {r['ranks']:>5} {r['accum']:>5} {r['scheme']:<7} {r['need_gb']:8.1f} "
                      f"{100 * r['headroom']:7.0f}%   params {r['params_gb']:.1f} GB, state {r['state_full_gb']:.1f} GB, "
                      f"activations {r['acts_gb']:.1f} GB")
        return 0
    if args.bench_train:   # one GPU, unsharded optimizers, one micro-step, compiled (bench_train --modes compile)
        d = args.depth or 20
        p = simulate_train("bench_train", d, args.batch_size, args.max_seq_len or 2048, args.world, 1, vocab=args.vocab)
        print(f"predicted d{d} B={args.batch_size}: {p.compiled / GB:.3g} GB allocated compiled ({p.peak / GB:.3g} GB eager), "
              f"{args.batch_size * (args.max_seq_len or 2048) / p.step_s:,.0f} tok/s at {100 * MFU:.0f}% MFU of {PEAK_FLOPS / 1e12:.0f} TFLOP/s")
        return 0
    failures = []
    for script in args.script or ["speedrun", "run1000"]:
        try:
            flags = script_flags(script, args.depth, args.device_batch_size)
            s = stage_settings(flags, args.world, args.max_seq_len, args.web_users)
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr); return 2
        t0 = time.time()
        try: rows = budget(s, [x.strip() for x in args.stages.split(",") if x.strip()])
        except ValueError as e: print(f"error: {e}", file=sys.stderr); return 2
        print_table(rows, f"{script}.sh: d{s['depth']}, T={s['T']}, vocab {s['vocab']:,}, {s['world']} ranks; GB per rank on an "
                    f"{CAPACITY_GB:.0f} GB H100 (simulated peak +{100 * FRAGMENTATION:.0f}% fragmentation +{RUNTIME_GB} GB CUDA "
                    f"runtime); step time at {100 * MFU:.0f}% MFU ({time.time() - t0:.0f} s to simulate)")
        for p, need, head, msg in verdicts(rows):
            if msg is None: continue
            failures.append(msg)
            B = fitting_batch(p, p.stage in COMPILED)
            if B: failures[-1] += f"; --device-batch-size={B} would fit with >= {100 * MIN_HEADROOM:.0f}% headroom (extrapolated)"
            print(("error: " if need > CAPACITY_GB else "warning: ") + failures[-1])
    if args.check and failures: return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
