"""Throughput of chat evaluation: batched vs one problem (or one completion) at a time, measured in one run.

    python -m bench.bench_chat_eval                                     # CPU: depth 4, vocab 4096, ARC-Easy + GSM8K
    python -m bench.bench_chat_eval --device cuda --depth 20 --dtype bfloat16 --problems 512

Categorical (ARC-Easy test, offline copy): the naive loop (one question per forward pass, the output head computed
at every position) against `run_categorical_eval` (the head only at each question's last position, through a
pre-hook) with batch size 1 and --batch-size questions per forward pass; problems/s and the ratios.
Generative (GSM8K test prompts): `run_generative_eval` with --samples completions per problem in one batched
Engine call (the prompt is prefilled once, the rows decode together) against one completion per call (the same
number of completions, each its own call with its own prefill); generated tokens/s and the ratio.

The model has random weights (throughput does not depend on what the weights say; sampling at temperature 1 keeps
every row generating to --max-new-tokens unless it happens to sample a stop token). The tokenizer is the run's
($NANOCHAT_BASE_DIR/tokenizer) if there is one, else one trained here on Python's help topics.
"""
import argparse, os, time
from contextlib import nullcontext
import torch

from bench.bench_engine import build_model   # a random GPT with no all-zero matrices
from nanochat.engine import Engine
from nanochat.tokenizer import Tokenizer, get_tokenizer
from nanochat.chat_eval import make_task, run_categorical_eval, run_generative_eval

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_tokenizer(vocab):
    try: return get_tokenizer(), "the run's tokenizer"
    except (FileNotFoundError, ValueError):
        import pydoc_data.topics
        text = "\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
        return Tokenizer.train_from_iterator([text], vocab_size=vocab), "trained on pydoc topics"


def timed(fn, device):
    if device.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter(); out = fn()
    if device.type == "cuda": torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096, help="vocab of the tokenizer trained here (if the run has none)")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="autocast dtype (bfloat16 on CUDA)")
    ap.add_argument("--problems", type=int, default=128, help="ARC-Easy questions")
    ap.add_argument("--batch-size", type=int, default=16, help="questions per forward pass, batched path")
    ap.add_argument("--gen-problems", type=int, default=3, help="GSM8K problems")
    ap.add_argument("--samples", type=int, default=8, help="completions per GSM8K problem")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    os.environ.setdefault("NANOCHAT_TASKS", "offline")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    autocast = (lambda: torch.amp.autocast(device_type=device.type, dtype=dtype)) if dtype != torch.float32 else nullcontext
    tok, tok_what = load_tokenizer(args.vocab)
    model = build_model(args.depth, tok.get_vocab_size(), 2048, device, torch.float32)
    engine = Engine(model, tok)
    c = model.config
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f" | depth {c.n_layer}, n_embd {c.n_embd}, vocab {c.vocab_size} ({tok_what}), {model.num_params() / 1e6:.1f}M params, {args.dtype}")

    # categorical: the naive loop (one question per forward, the head at every position) vs run_categorical_eval
    arc = make_task("ARC-Easy")
    n = min(args.problems, len(arc))

    @torch.inference_mode()
    def naive():
        correct = 0
        for i in range(n):
            conv = arc[i]
            logits = model(torch.tensor([tok.render_for_completion(conv)], device=device))[0, -1]
            scores = logits[[tok.encode(l)[0] for l in conv["letters"]]]
            correct += arc.evaluate(conv, conv["letters"][int(scores.argmax())])
        return correct / n

    with autocast(): naive(); run_categorical_eval(arc, tok, model, batch_size=args.batch_size, max_problems=16)  # warm-up
    with autocast(): acc0, dt0 = timed(naive, device)
    print(f"categorical ARC-Easy, naive loop  : {n} questions in {dt0:6.2f}s = {n / dt0:8.1f} problems/s (accuracy {acc0:.4f})")
    for bs in (1, args.batch_size):
        with autocast(): acc, dt = timed(lambda: run_categorical_eval(arc, tok, model, batch_size=bs, max_problems=n), device)
        print(f"categorical ARC-Easy, batch {bs:>3}    : {n} questions in {dt:6.2f}s = {n / dt:8.1f} problems/s "
              f"(accuracy {acc:.4f}) = {dt0 / dt:.1f}x the naive loop")
        assert abs(acc - acc0) < 1e-9, (acc, acc0)

    # generative: num_samples rows in one Engine call vs the same completions one call each
    gsm = make_task("GSM8K")
    # vary_seed: each problem its own seed, so the one-by-one loop below draws fresh samples for every problem
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=1.0, top_k=50, max_problems=args.gen_problems, vary_seed=True)
    with autocast(): run_generative_eval(gsm, tok, model, engine, num_samples=2, **{**kw, "max_new_tokens": 4})  # warm-up
    d = {}
    with autocast(): _, dt_b = timed(lambda: run_generative_eval(gsm, tok, model, engine, num_samples=args.samples, details=d, **kw), device)
    tok_b = d["tokens"]
    def one_at_a_time():
        n = 0
        for j in range(args.samples):
            dj = {}
            run_generative_eval(gsm, tok, model, engine, num_samples=1, seed=42 + 1000 * j, details=dj, **kw)
            n += dj["tokens"]
        return n
    with autocast(): tok_1, dt_1 = timed(one_at_a_time, device)
    print(f"generative GSM8K, {args.gen_problems} problems x {args.samples} samples, batched : {tok_b} tokens in {dt_b:6.2f}s = {tok_b / dt_b:8.1f} tokens/s")
    print(f"generative GSM8K, {args.gen_problems} problems x {args.samples} samples, one by one: {tok_1} tokens in {dt_1:6.2f}s = {tok_1 / dt_1:8.1f} tokens/s")
    print(f"generative speed-up, {args.samples} samples per Engine call vs one completion per call: {(tok_b / dt_b) / (tok_1 / dt_1):.1f}x")


if __name__ == "__main__":
    main()
