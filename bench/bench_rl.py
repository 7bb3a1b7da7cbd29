"""RL rollout throughput: a group of samples drawn batched (all rows of a question in one Engine call) vs one
completion at a time, and the split of an RL step between sampling and training.

    python -m bench.bench_rl                                        # CPU: depth 4, vocab 8192, 16 samples x 128 tokens
    python -m bench.bench_rl --device cuda --depth 20 --dtype bfloat16 --vocab 65536 --gen 256   # d20-shaped, on a GPU

Both modes run `nanochat.rl.sample_group` on the same random-weight model and the same arithmetic question
(the tokenizer is a 512-token BPE trained on arithmetic problems; the model's vocab is --vocab, so the output
layer costs what it would in a real run). Stop tokens are disabled, so every row samples exactly --gen tokens and
the two modes do the same amount of work; sampled tokens/s = rows x tokens / seconds. Batched: one prefill, then
--samples rows decode together (`device_batch_size` = --samples). One at a time: --samples separate calls of 1 row
(the prompt is prefilled each time). Then one training pass (the policy-gradient loss of `08_rl` over the sampled
rows, forward + backward, in micro-batches of --train-batch rows) is timed, and on CUDA the peak memory.
"""
import argparse, time
from contextlib import nullcontext
import torch

from bench.bench_engine import build_model   # a random GPT with no all-zero matrices
from nanochat.engine import Engine
from nanochat.tokenizer import Tokenizer
from nanochat.tasks import Arithmetic, message_text
from nanochat.rl import sample_group, collate, token_logprobs, pg_loss, group_advantages

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--samples", type=int, default=16, help="completions per question (the group)")
    p.add_argument("--gen", type=int, default=128, help="tokens sampled per completion")
    p.add_argument("--train-batch", type=int, default=8, help="rows per forward/backward in the training pass")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    task = Arithmetic(split="train", size=2000)
    tok = Tokenizer.train_from_iterator([message_text(m) for i in range(2000) for m in task[i]["messages"]], vocab_size=512)
    model = build_model(args.depth, args.vocab, 2048, device, torch.float32)
    engine = Engine(model, tok)
    engine.stop_tokens = set()   # every row samples exactly --gen tokens: equal work in both modes
    autocast = torch.amp.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    conv = task[0]
    print(f"model: depth {args.depth}, {model.num_params():,} params, vocab {args.vocab:,}; {args.samples} samples x "
          f"{args.gen} tokens of a {len(tok.render_for_completion(conv))}-token prompt; {args.device}, {args.dtype}, "
          f"{torch.get_num_threads()} threads")

    def rollout(batch):
        sync(device); t0 = time.perf_counter()
        with autocast:
            g = sample_group(engine, tok, conv, task.reward, args.samples, device_batch_size=batch, max_new_tokens=args.gen,
                             temperature=1.0, top_k=50, seed=0)
        sync(device)
        return g, time.perf_counter() - t0

    rollout(args.samples)   # warm-up (allocator, kernels)
    g, t_batched = rollout(args.samples)
    _, t_single = rollout(1)
    n = g["stats"]["sampled_tokens"]
    assert n == args.samples * args.gen, n
    tps_b, tps_1 = n / t_batched, n / t_single
    print(f"batched, {args.samples:3d} rows at once : {t_batched:7.2f} s  {tps_b:9,.0f} sampled tokens/s")
    print(f"one completion at a time  : {t_single:7.2f} s  {tps_1:9,.0f} sampled tokens/s")
    print(f"batched / one at a time: {tps_b / tps_1:.1f}x")

    # one training pass over the group's rows: the step's other half
    model.train()
    adv = group_advantages(torch.linspace(0, 1, args.samples))
    pad = tok.encode_special("<|assistant_end|>")
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats(device)
    sync(device); t0 = time.perf_counter()
    for i in range(0, args.samples, args.train_batch):
        inputs, targets = collate(g["sequences"][i:i + args.train_batch], g["masks"][i:i + args.train_batch], pad, device)
        with autocast:
            loss, _ = pg_loss(token_logprobs(model, inputs, targets), targets, adv[i:i + args.train_batch].to(device), n)
        loss.backward()
    sync(device); t_train = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    print(f"training pass (forward + backward, {args.train_batch} rows per micro-batch): {t_train:.2f} s; a step of this "
          f"group is {t_batched / (t_batched + t_train):.0%} sampling, {t_train / (t_batched + t_train):.0%} training")
    if device.type == "cuda": print(f"peak memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
