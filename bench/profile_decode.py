"""Operator-by-operator profile of the cached one-token decode step, against the cache-free forward of the same model.

    python -m bench.profile_decode                       # depth 4, vocab 8192, prompt 16, 128 new tokens, CPU
    python -m bench.profile_decode --threads 2 --batch 8 --temperature 1 --baseline a639103

torch.profiler records whole `Engine.generate` runs (prefill excluded from the per-step figures only by dividing by
the decode steps, the prefill is one step among 128) and prints, per operator, the self CPU time per decode step
and the calls per step (the total counts every aten operator, nested ones included: a figure that other
processes on a shared machine cannot disturb); then the same for the cache-free forward over the 16 + 64 token sequence (one step of the
naive loop halfway through the generation). With --baseline, the model+engine code of that git commit (see
bench_engine.package_at) is profiled too, so the table shows where a step's time went before and after.
Profiler overhead inflates small operators; compare the columns, not the absolute figures with bench_engine.
"""
import argparse, collections, torch
from torch.profiler import profile, ProfilerActivity
from bench.bench_engine import build_model, NoSpecialTokens, package_at, old_model
from nanochat.engine import Engine


def op_table(fn, steps):
    "{op name: (self CPU ms per step, calls per step)} of fn(), and the total self CPU ms per step."
    fn()   # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof: fn()
    ops = {e.key: (e.self_cpu_time_total / 1e3 / steps, e.count / steps) for e in prof.key_averages()}
    return ops, sum(ms for ms, _ in ops.values()), sum(n for k, (_, n) in ops.items() if k.startswith("aten::"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = ap.add_argument
    a("--depth", type=int, default=4); a("--vocab", type=int, default=8192); a("--prompt", type=int, default=16)
    a("--gen", type=int, default=128); a("--batch", type=int, default=1); a("--temperature", type=float, default=0.0)
    a("--threads", type=int, default=1); a("--top", type=int, default=20); a("--baseline", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.depth, args.vocab, 2048, torch.device("cpu"), torch.float32)
    prompt = torch.randint(0, args.vocab, (args.prompt,), generator=torch.Generator().manual_seed(1)).tolist()
    runs = collections.OrderedDict()
    gen = lambda eng: (lambda: list(eng.generate(prompt, num_samples=args.batch, max_tokens=args.gen,
                                                 temperature=args.temperature, seed=0)))
    if args.baseline:
        old, why = package_at(args.baseline)
        if old is None: print(f"baseline skipped: {why}")
        else: runs[f"cached@{args.baseline}"] = op_table(gen(old.engine.Engine(old_model(old, model), NoSpecialTokens(args.vocab))), args.gen)
    runs["cached (now)"] = op_table(gen(Engine(model, NoSpecialTokens(args.vocab))), args.gen)
    ids = torch.tensor([prompt + prompt * 4] * args.batch)[:, :args.prompt + args.gen // 2]
    def free():
        with torch.inference_mode():
            for _ in range(10): model(ids)
    runs["cache-free fwd"] = op_table(free, 10)
    names = list(runs)
    first = runs[names[-2] if len(names) > 2 else names[0]][0]
    top = sorted(set().union(*(r[0] for r in runs.values())), key=lambda k: -max(r[0].get(k, (0, 0))[0] for r in runs.values()))[:args.top]
    print(f"depth {args.depth}, vocab {args.vocab}, batch {args.batch}, temperature {args.temperature}, {args.threads} thread(s); "
          f"self CPU ms per decode step (calls per step), profiler on")
    print(f"{'operator':<48}" + "".join(f"{n:>24}" for n in names))
    for k in top:
        print(f"{k[:47]:<48}" + "".join(f"{r[0].get(k, (0, 0))[0]:>14.3f} ({r[0].get(k, (0, 0))[1]:>6.1f})" for r in runs.values()))
    print(f"{'total':<48}" + "".join(f"{r[1]:>14.3f} ({r[2]:>6.0f})" for r in runs.values()))
    print("(the calls per step do not depend on the machine's load; the milliseconds do)")


if __name__ == "__main__":
    main()
