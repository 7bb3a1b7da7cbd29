"""Multi-rank check of nanochat.optim, launched by nbs/04_muon.ipynb (and runnable by hand):

    torchrun --standalone --nproc_per_node=2 tests/dist_optim_worker.py OUT_DIR

Every rank trains the same tiny GPT on its own slice of each global batch; the sharded AdamW + Muon do the gradient
averaging (no DDP). Checked here, on every rank (a failed check raises, so torchrun exits non-zero):
  1. all replicas hold bit-identical parameters after training;
  2. the global gradient norms are identical on every rank (they are part of each case's result);
  3. resuming is exact: K steps, save model + this rank's optimizer shard, rebuild everything, load, K more steps
     gives bit-for-bit the parameters of 2K uninterrupted steps.
Rank 0 then writes OUT_DIR/dist_result.pt = {case: final state_dict}; the notebook compares it with `run_case` on a
single process that sees the full global batch. The functions below are the same for 1 and N ranks.
"""
import os, sys
from pathlib import Path
import torch
import torch.distributed as dist
from nanochat.gpt import GPT, GPTConfig
from nanochat.optim import setup_optimizers, get_lr_multiplier, get_muon_momentum, clip_grad_norm

GLOBAL_BATCH, SEQ, STEPS = 8, 16, 6
CASES = {                               # name: (vocab_size, dtype of Newton–Schulz)
    "fp32_ns": (64, torch.float32),     # NS in fp32: 1 rank vs 2 ranks differ only by float summation order
    "bf16_ns": (64, torch.bfloat16),    # the production setting: a 1e-7 gradient difference can flip a bf16 rounding
    "odd_vocab": (65, torch.float32),   # 65 rows: AdamW falls back to all-reduce (dim 0 not divisible by 2)
    "clip": (65, torch.float32),        # odd_vocab with a global gradient clip that triggers on some steps only
}
GRAD_CLIP = {"clip": 0.6}               # this run's norms are 0.50-0.69: steps 2-5 are clipped, steps 0-1 not

def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

def build(vocab_size, ns_dtype):
    "A 3-layer GPT (3 of each matrix shape: Muon's chunks of 2 need a padding slot) and its two optimizers."
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=SEQ, vocab_size=vocab_size, n_layer=3, n_head=2, n_kv_head=2, n_embd=32))
    model.init_weights()
    opts = setup_optimizers(model)
    for group in opts[1].param_groups: group["ns_dtype"] = ns_dtype
    return model, opts

def global_batch(it, vocab_size):
    "The global batch of step `it`: seeded by the step, so a resumed run sees exactly the same data."
    tok = torch.randint(0, vocab_size, (GLOBAL_BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1000 + it))
    return tok[:, :-1], tok[:, 1:]

def train(model, opts, vocab_size, start, stop, grad_clip=0.0):
    """Steps start..stop-1 of a STEPS-long run, each rank on its slice of the global batch (the whole of it on 1 rank).
    Returns the global gradient norm of every step (measured after the cross-rank averaging)."""
    rank, world = rank_world()
    rows = GLOBAL_BATCH // world
    norms = []
    for it in range(start, stop):
        x, y = global_batch(it, vocab_size)
        loss = model(x[rank * rows:(rank + 1) * rows], y[rank * rows:(rank + 1) * rows])  # mean over my rows
        loss.backward()
        lrm = get_lr_multiplier(it, STEPS, warmup_ratio=0.2)
        for opt in opts:
            for group in opt.param_groups: group["lr"] = group["initial_lr"] * lrm
        for group in opts[1].param_groups: group["momentum"] = get_muon_momentum(it)
        norms.append(clip_grad_norm(opts, grad_clip).item())
        for opt in opts: opt.step()
        model.zero_grad(set_to_none=True)
    return norms

def run_case(name):
    vocab_size, ns_dtype = CASES[name]
    model, opts = build(vocab_size, ns_dtype)
    norms = train(model, opts, vocab_size, 0, STEPS, GRAD_CLIP.get(name, 0.0))
    return {**{k: v.detach().clone() for k, v in model.state_dict().items()}, "grad_norms": torch.tensor(norms)}

def resume_is_exact(name, ckpt_dir):
    "STEPS straight vs STEPS//2 + save + fresh model/optimizers + load + the rest. True when bit-identical."
    vocab_size, ns_dtype = CASES[name]
    straight = run_case(name)
    rank, _ = rank_world()
    model, opts = build(vocab_size, ns_dtype)
    train(model, opts, vocab_size, 0, STEPS // 2)
    path = Path(ckpt_dir) / f"optim_rank{rank}.pt"       # one file per rank: the optimizer state is sharded
    torch.save({"model": model.state_dict(), "optim": [opt.state_dict() for opt in opts]}, path)
    del model, opts
    model, opts = build(vocab_size, ns_dtype)             # fresh everything, then load
    ckpt = torch.load(path)
    model.load_state_dict(ckpt["model"])
    for opt, sd in zip(opts, ckpt["optim"]): opt.load_state_dict(sd)
    train(model, opts, vocab_size, STEPS // 2, STEPS)
    return all(torch.equal(v, straight[k]) for k, v in model.state_dict().items())

def replicas_identical(state):
    "Every rank compares its parameters with rank 0's (broadcast), bit for bit."
    ok = True
    for v in state.values():
        ref = v.clone()
        dist.broadcast(ref, src=0)
        ok &= torch.equal(ref, v)
    return ok

if __name__ == "__main__":
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = rank_world()
    results = {name: run_case(name) for name in CASES}
    for name, state in results.items():
        if not replicas_identical(state): raise RuntimeError(f"rank {rank}: replicas differ after training ({name})")
    if not resume_is_exact("bf16_ns", out): raise RuntimeError(f"rank {rank}: save/load/resume is not bit-exact")
    if rank == 0: torch.save(results, out / "dist_result.pt")
    print(f"rank {rank}/{world}: replicas identical, resume exact\n", end="", flush=True)  # one write: ranks share stdout
    dist.barrier()   # let both ranks finish all collective traffic first: tearing gloo down while the peer still
                     # talks to it can abort the process ("terminate called without an active exception")
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)   # skip interpreter finalisation: gloo's threads occasionally abort it (~1 in 20 runs here)
