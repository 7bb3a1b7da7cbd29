"""A slow, one-example-at-a-time transcription of upstream nanochat's CORE procedure (karpathy/nanochat at 4a87a0d:
`scripts/base_eval.py` + `nanochat/core_eval.evaluate_task`), written from its description, to check that the course's
batched scorer (`nanochat.evaluate.evaluate_task`, procedure="reference") makes the same decision on every example.

    python -m tests.core_reference --max-per-task 100      # the newest base model under $NANOCHAT_BASE_DIR, offline tasks

prints, per offline task, the accuracy of the course's scorer and of this transcription, and whether every
per-example decision agrees.

The procedure, step by step (what `reference_decisions` does):
1. shuffle the task's rows with random.Random(1337).shuffle, keep the first N (--max-per-task; all when N <= 0);
2. example `idx` (its position in that kept list) gets K few-shot examples: random.Random(1234 + idx).sample of the
   positions other than idx, K of them (an error when there are fewer than K);
3. prompts: multiple_choice "query<d>choice" per choice, shots "query<d>gold choice" + blank line; schema
   "context_option<d>continuation" per option, shots "gold option<d>continuation" + blank line; language_modeling
   shots "trim(context)<d>continuation" + blank line, then "trim(context)<d>" without / "...<d>continuation" with the
   answer, and the prompt without the answer is stripped;
4. tokens: BOS + encode(prompt); span = after the common prefix (multiple_choice), the common suffix (schema), after
   the prompt without the answer (language_modeling, which must be a prefix of the one with it);
5. nanochat's model has no `max_seq_len`, so nothing is cropped (a sequence longer than the model's rotary cache
   would stop the reference; we crop it from the left keeping BOS, the course's documented clamp, and count it);
6. one padded batch per example (BOS pads on the right), the loss of position t predicting t + 1; decision:
   multiple_choice/schema the first index of the smallest mean loss over the span == gold; language_modeling
   every greedy prediction in the span equals the answer token.
"""
import argparse, os, random, sys

import torch
import torch.nn.functional as F


def _prefix_len(seqs):
    shortest = min(len(s) for s in seqs)
    for i in range(shortest):
        if len({s[i] for s in seqs}) > 1: return i
    return shortest


def _suffix_len(seqs):
    shortest = min(len(s) for s in seqs)
    for i in range(1, shortest + 1):
        if len({s[-i] for s in seqs}) > 1: return i - 1
    return shortest


def _prompts(item, shots, task_type, d):
    if task_type == "multiple_choice":
        head = ""
        for s in shots: head += s["query"] + d + s["choices"][s["gold"]] + "\n\n"
        return [head + item["query"] + d + c for c in item["choices"]]
    if task_type == "schema":
        head = ""
        for s in shots: head += s["context_options"][s["gold"]] + d + s["continuation"] + "\n\n"
        return [head + opt + d + item["continuation"] for opt in item["context_options"]]
    head = ""
    for s in shots: head += s["context"].strip() + d + s["continuation"] + "\n\n"
    without = head + item["context"].strip() + d
    with_ = without + item["continuation"]
    return [without.strip(), with_]


@torch.no_grad()
def reference_decisions(model, tokenizer, rows, task_type, num_fewshot, delimiter=" ", max_per_task=-1):
    "The reference's 0/1 per kept example, in the order of the shuffled list; and how many sequences were clamped."
    data = list(rows)
    random.Random(1337).shuffle(data)
    if max_per_task > 0: data = data[:max_per_task]
    bos = tokenizer.get_bos_token_id()
    limit = model.rotary_seq_len
    device = model.get_device()
    out, clamped = [], 0
    for idx, item in enumerate(data):
        shots = []
        if num_fewshot > 0:
            others = [i for i in range(len(data)) if i != idx]
            shots = [data[i] for i in random.Random(1234 + idx).sample(others, num_fewshot)]
        prompts = _prompts(item, shots, task_type, delimiter)
        toks = [tokenizer.encode(p, prepend=bos) for p in prompts]
        if task_type == "multiple_choice":
            p = _prefix_len(toks)
            starts, ends = [p] * len(toks), [len(t) for t in toks]
        elif task_type == "schema":
            k = _suffix_len(toks)
            ends = [len(t) for t in toks]
            starts = [e - k for e in ends]
        else:
            without, with_ = toks
            assert with_[:len(without)] == without and len(without) < len(with_), "reference assertion"
            toks, starts, ends = [with_], [len(without)], [len(with_)]
        for j, t in enumerate(toks):   # see 5. in the module docstring
            if len(t) > limit:
                cut = len(t) - limit
                toks[j] = [bos] + t[cut + 1:]
                starts[j], ends[j] = max(1, starts[j] - cut), ends[j] - cut
                clamped += 1
        T = max(len(t) for t in toks)
        ids = torch.full((len(toks), T), bos, dtype=torch.long)
        for j, t in enumerate(toks): ids[j, :len(t)] = torch.tensor(t)
        ids = ids.to(device)
        logits = model(ids)
        targets = torch.roll(ids, -1, dims=1)
        losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none").view(len(toks), T)
        losses[:, -1] = float("nan")
        preds = logits.argmax(-1)
        if task_type == "language_modeling":
            s, e = starts[0], ends[0]
            out.append(int(torch.all(preds[0, s - 1:e - 1] == ids[0, s:e]).item()))
        else:
            means = [losses[j, s - 1:e - 1].mean().item() for j, (s, e) in enumerate(zip(starts, ends))]
            out.append(int(means.index(min(means)) == item["gold"]))
    return out, clamped


def compare(model, tokenizer, tasks, max_per_task, log=print):
    "Per task: (ours accuracy, reference accuracy, identical decisions?, n, clamped); printed as a table."
    from nanochat.evaluate import evaluate_task
    res = {}
    if log: log(f"{'task':<20}{'n':>6}{'course scorer':>15}{'transcription':>15}  identical decisions")
    for spec, rows in tasks:
        acc, ours = evaluate_task(model, tokenizer, rows, spec, max_per_task=max_per_task if max_per_task > 0 else None,
                                  details=True)
        ref, clamped = reference_decisions(model, tokenizer, rows, spec.task_type, spec.num_fewshot, spec.delimiter, max_per_task)
        racc = sum(ref) / len(ref)
        res[spec.label] = (acc, racc, ours == ref, len(ref), clamped)
        if log: log(f"{spec.label:<20}{len(ref):>6}{acc:>15.4f}{racc:>15.4f}  {ours == ref}" + (f" ({clamped} clamped)" if clamped else ""))
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description="CORE-offline per task: the course's scorer vs the reference transcription")
    p.add_argument("--max-per-task", type=int, default=100)
    p.add_argument("--tasks", default=None, help="comma-separated labels (default: every offline task)")
    p.add_argument("--model-tag", default=None)
    args = p.parse_args(argv)
    from nanochat.checkpoint import load_model
    from nanochat.evaluate import offline_tasks
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    model, tok, meta = load_model("base", "cpu", phase="eval", model_tag=args.model_tag)
    print(f"base model step {meta['step']}, depth {model.config.n_layer}, sequence_len {model.config.sequence_len}")
    tasks = offline_tasks(args.tasks.split(",") if args.tasks else None)
    res = compare(model, tok, tasks, args.max_per_task)
    print(f"every decision identical on every task: {all(r[2] for r in res.values())}")
    return res


if __name__ == "__main__":
    sys.exit(0 if all(r[2] for r in main().values()) else 1)
