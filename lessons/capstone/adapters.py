"""The capstone's adapters: the only place the tests touch your code.

Write your implementation wherever you like (a module of your own, a notebook exported with nbdev), then make each
function below call it. Until you do, every test fails with NotImplementedError — that is the starting point.

`CAPSTONE_IMPL=course pytest lessons` points the adapters at the course's own `nanochat` package instead; CI
runs it that way so the exercises and their graders can never drift from the course's code.
"""
import os

_IMPL = os.environ.get("CAPSTONE_IMPL", "")
if _IMPL not in ("", "course"):
    raise ValueError(f"CAPSTONE_IMPL={_IMPL!r}: leave it unset to grade your code, or set CAPSTONE_IMPL=course to grade "
                     "the course's own nanochat package")
COURSE = _IMPL == "course"


def run_train_bpe(text: str, vocab_size: int, pattern: str) -> dict[tuple[int, int], int]:
    """Train byte-level BPE on `text`: split it with the regex `pattern` (use the `regex` package), start from the
    UTF-8 bytes of each chunk, and repeatedly merge the most frequent adjacent pair (ties: the smaller pair (a, b))
    into a new token id 256, 257, ... until the vocabulary has `vocab_size` tokens or no pair is left.
    Returns the merges as {(a, b): new_id}."""
    if COURSE:
        from nanochat.tokenizer import train_bpe
        return train_bpe(text, vocab_size, pattern)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_train_bpe to your BPE trainer")


def run_encode(text: str, merges: dict[tuple[int, int], int], pattern: str) -> list[int]:
    """Encode `text` with learned `merges`: split with `pattern`, and in each chunk keep applying the present pair
    that was learned EARLIEST (lowest new id) until no learned pair is left. Returns the token ids."""
    if COURSE:
        from nanochat.tokenizer import bpe_encode
        return bpe_encode(text, merges, pattern)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_encode to your encoder")


def run_decode(ids: list[int], merges: dict[tuple[int, int], int]) -> str:
    """Turn token ids back into text: map every id to its bytes (a merged token's bytes are its two parents'
    bytes concatenated), join them, and decode as UTF-8 with errors="replace"."""
    if COURSE:
        from nanochat.tokenizer import merges_to_ranks
        vocab = {i: b for b, i in merges_to_ranks(merges).items()}
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_decode to your decoder")


def run_render_conversation(conversation: dict, max_tokens: int, enc) -> tuple[list[int], list[int]]:
    """Render a chat conversation into (ids, mask) for supervised finetuning: mask 1 on the tokens the assistant must
    learn to produce, 0 elsewhere. `conversation` is {"messages": [{"role", "content"}, ...]} (an optional leading
    system message, then user/assistant alternating; assistant content is a str or a list of parts of type text,
    python or python_output). `enc` is a tiktoken.Encoding holding nanochat's 9 special tokens: encode text with
    `enc.encode_ordinary(text)`, get a special token's id with `enc.encode_single_token("<|bos|>")`. Cut both lists
    to `max_tokens`, and leave the input conversation unmodified."""
    if COURSE:
        from nanochat.tokenizer import Tokenizer
        return Tokenizer(enc, "<|bos|>").render_conversation(conversation, max_tokens=max_tokens)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_render_conversation to your chat renderer")


# ---------------------------------------------------------------------------------------------------------------
# Stage 2 — the transformer (after lesson L02). Tensors in, tensors out; fp32 on the CPU.


def run_rope(x, base: float = 10000.0):
    """Rotary position embedding of `x` (B, T, H, D) at positions 0 .. T-1, nanochat's layout: channel i is paired
    with channel i + D/2 (split-half), pair i turns by the angle pos * base**(-2i/D), and the pair (x1, x2) becomes
    (x1*cos + x2*sin, -x1*sin + x2*cos). Returns a tensor of x's shape and dtype."""
    if COURSE:
        from nanochat.attention import precompute_rotary, apply_rotary
        cos, sin = precompute_rotary(x.size(1), x.size(-1), base=base, device=x.device)
        return apply_rotary(x, cos, sin)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_rope to your rotary embedding")


def run_attention(q, k, v, causal: bool = True):
    """Scaled dot-product attention: q (B, H, T, D), k and v (B, H_kv, T, D) with H a multiple of H_kv (GQA: query
    head h reads kv head h // (H // H_kv)). With `causal`, query i attends to keys 0..i only. Returns (B, H, T, D).
    Write it with matmuls and a softmax: the grader compares it with torch's fused version."""
    if COURSE:
        from nanochat.attention import attention
        return attention(q, k, v, causal=causal)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_attention to your attention")


def run_gpt_forward(state_dict: dict, config: dict, idx):
    """Logits (B, T, vocab_size), float32, of the nanochat GPT whose weights are `state_dict` (the reference key
    names: transformer.wte.weight, transformer.h.<i>.attn.c_q/c_k/c_v/c_proj.weight, transformer.h.<i>.mlp.c_fc/
    c_proj.weight, lm_head.weight) for token ids `idx` (B, T) at positions 0 .. T-1. `config` holds sequence_len,
    vocab_size, n_layer, n_head, n_kv_head, n_embd (a checkpoint's meta `model_config`). Build your own model from
    it (or compute the forward pass directly from the tensors). It may be called under torch.autocast."""
    if COURSE:
        import torch
        from nanochat.gpt import GPT, GPTConfig
        with torch.device("meta"): model = GPT(GPTConfig(**config))
        model.load_state_dict(state_dict, strict=True, assign=True)
        model.init_rotary()   # the RoPE tables are not in the state dict
        return model(idx)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_gpt_forward to your GPT")


def run_config_from_depth(depth: int, vocab_size: int) -> dict:
    """The model config that `--depth` builds, as the reference's base_train sizes it: a dict with n_layer, n_embd,
    n_head, n_kv_head and vocab_size (sequence_len 2048). Width 64 per layer, heads of about 128 channels; a depth
    whose width cannot be cut into equal, even-sized heads must raise ValueError naming the nearest depths that work."""
    if COURSE:
        from dataclasses import asdict
        from nanochat.gpt import GPTConfig
        return asdict(GPTConfig.from_depth(depth, vocab_size))
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_config_from_depth to your depth rule")


def run_init_weights(config: dict, seed: int) -> dict:
    """The state dict (reference key names, CPU tensors) of a freshly initialised GPT for `config` after
    torch.manual_seed(seed): the same seed must give the reference nanochat's initial weights bit for bit, so the
    random numbers must be drawn in the reference's order."""
    if COURSE:
        import torch
        from nanochat.gpt import GPT, GPTConfig
        torch.manual_seed(seed)
        with torch.device("meta"): model = GPT(GPTConfig(**config))
        model.to_empty(device="cpu")
        model.init_weights()
        return model.state_dict()
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_init_weights to your GPT's initialisation")


# ---------------------------------------------------------------------------------------------------------------
# Stage 2 (continued) — the KV cache of the inference engine (after lesson L02, notebook 03b). Tensors in and out.


def make_kv_cache(batch_size: int, num_heads: int, seq_len: int, head_dim: int, num_layers: int):
    """Return YOUR KV cache for `num_layers` attention layers and a batch of `batch_size` sequences, `num_heads`
    key/value heads of `head_dim` channels, with room for `seq_len` positions to start with (more must fit: grow).
    The graders plug it into the course's GPT (`model(idx, kv_cache=cache)`) and call, besides:
      get_pos() -> int            positions cached so far (the same for every row and layer)
      insert_kv(layer, k, v)      k, v (B, H, T_new, D): store them after the cached positions of `layer`; return
                                  (k_all, v_all), that layer's keys and values of ALL positions so far, (B, H, pos +
                                  T_new, D). Every layer 0..num_layers-1 inserts the same new positions, in order.
      prefill(other)              copy what `other` (another cache from this function, batch 1 or the same batch)
                                  holds into this cache, into every row when `other` has one row; then
                                  get_pos() == other.get_pos()
      reset()                     forget everything: get_pos() == 0"""
    if COURSE:
        from nanochat.engine import KVCache
        return KVCache(batch_size=batch_size, num_heads=num_heads, seq_len=seq_len, head_dim=head_dim, num_layers=num_layers)
    raise NotImplementedError("lessons/capstone/adapters.py: wire make_kv_cache to your KV cache class")


# ---------------------------------------------------------------------------------------------------------------
# Stage 3 — the optimizers (after lesson L03).


def run_newton_schulz(G, steps: int = 5):
    """Approximately orthogonalise the matrix G (rows, cols) with `steps` iterations of Muon's quintic Newton–Schulz,
    coefficients (a, b, c) = (3.4445, -4.7750, 2.0315), in float32: the result has G's singular vectors and every
    singular value moved towards 1. Normalise G first (its singular values must start in [0, 1]; add 1e-7 to what you
    divide by, so a zero matrix gives zero). Returns a float32 tensor of G's shape."""
    if COURSE:
        import torch
        from nanochat.optim import zeropower_via_newtonschulz
        return zeropower_via_newtonschulz(G, steps=steps, dtype=torch.float32)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_newton_schulz to your Newton–Schulz")


def get_adamw_cls():
    """Your AdamW optimizer class: a torch.optim.Optimizer subclass constructed as
    cls(params_or_groups, lr=..., betas=(b1, b2), eps=..., weight_decay=...), whose step() takes no arguments.
    Decoupled weight decay, bias-corrected moments, torch.optim.AdamW's arithmetic; read each group's lr at every
    step (schedules change it)."""
    if COURSE:
        from nanochat.optim import AdamW
        return AdamW
    raise NotImplementedError("lessons/capstone/adapters.py: wire get_adamw_cls to your AdamW class")


def run_muon_step(W, grad, momentum_buffer, lr: float, momentum: float, nesterov: bool = True, ns_steps: int = 5):
    """One Muon step on the matrix W (rows, cols), float32 throughout. Returns (new_W, new_momentum_buffer). The
    buffer is an exponential moving AVERAGE of the gradients (weight `momentum` on the old buffer); with `nesterov`
    the step looks ahead along it; the direction is your Newton–Schulz of that (ns_steps iterations); the step's size
    is lr, times the aspect-ratio factor that makes its effect independent of the matrix's shape (lesson L03).
    You may update W and the buffer in place, but return them."""
    if COURSE:
        import torch
        from nanochat.optim import muon_update
        W, buf = W.clone(), momentum_buffer.clone()
        muon_update(W, grad, buf, lr, momentum, nesterov=nesterov, ns_steps=ns_steps, ns_dtype=torch.float32)
        return W, buf
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_muon_step to your Muon update")


# ---------------------------------------------------------------------------------------------------------------
# Stage 4 — pretraining: the loader's exact resume and the training step (after lesson L04). Lists of token ids
# and a small model in, batches and numbers out; no files, no tokenizer.


def run_packed_loader(docs: list[list[int]], bos_id: int, B: int, T: int, resume_state=None):
    """A generator of (inputs, targets, state), forever. The token stream: every document of `docs` (lists of token
    ids) with `bos_id` in front, concatenated, and again from the first document once the last one is used up (the
    next epoch). Each batch takes the next B*T+1 tokens of the stream: inputs are the first B*T, targets the last
    B*T, both (B, T) int64; it consumes B*T of them (the last target is the next batch's first input). `state` is
    the position in the stream where the NEXT batch starts: small and JSON-serialisable, whatever the number of
    batches so far. Started with resume_state=state, the generator yields exactly the batches that would have
    followed."""
    if COURSE:
        from nanochat.dataloader import distributed_data_loader   # the course's loader, fed the documents as a shard
        return _reference_packed_loader(distributed_data_loader, docs, bos_id, B, T, resume_state)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_packed_loader to your loader")


def run_train_steps(model, optimizers, micro_batches, grad_accum: int, start_step: int, num_steps: int,
                    num_iterations: int, warmup_ratio: float = 0.0, warmdown_ratio: float = 0.2,
                    final_lr_frac: float = 0.0) -> list[float]:
    """Run optimizer steps start_step .. start_step + num_steps - 1 of a run of `num_iterations` steps. Each step
    takes the next `grad_accum` micro-batches (x, y) from the iterator `micro_batches`, calls model(x, y) (a mean
    loss) and backpropagates so the gradients equal those of the mean loss over the step's micro-batches; then it
    sets every param group's "lr" to group["initial_lr"] times the LR multiplier of the step (warm-up, constant 1,
    linear warm-down to final_lr_frac, as in lesson L04) and the "momentum" of every group that has that key to
    the Muon momentum of the step (0.85 -> 0.95 over 300 steps); then steps every optimizer and zeroes the
    gradients. Returns the mean loss of every step."""
    if COURSE:
        from nanochat.pretrain import accumulate_gradients, set_schedules
        losses = []
        for step in range(start_step, start_step + num_steps):
            loss = accumulate_gradients(model, (next(micro_batches) for _ in range(grad_accum)), grad_accum)
            set_schedules(optimizers, step, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac)
            for opt in optimizers: opt.step()
            model.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_train_steps to your training step")


_LOADER_DIRS = {}

def _reference_packed_loader(distributed_data_loader, docs, bos_id, B, T, resume_state):
    "The course's parquet loader on the documents written as a one-file split, through a tokenizer of numbers."
    import tempfile
    from pathlib import Path
    from nanochat.dataset import write_shard, shard_name

    class NumberTokenizer:   # a "document" is its token ids written as text: "5 17 3"
        def get_bos_token_id(self): return bos_id
        def encode(self, texts, prepend=None, num_threads=1):
            return [([prepend] if prepend is not None else []) + [int(t) for t in s.split()] for s in texts]

    texts = [" ".join(map(str, d)) for d in docs]
    key = hash(tuple(texts))
    if key not in _LOADER_DIRS:   # one shard per distinct document list, in a temp dir removed at exit
        import atexit, shutil
        _LOADER_DIRS[key] = Path(tempfile.mkdtemp(prefix="capstone_loader_"))
        atexit.register(shutil.rmtree, _LOADER_DIRS[key], True)
        write_shard(texts, _LOADER_DIRS[key] / shard_name(0), row_group_size=3)
    data_dir = _LOADER_DIRS[key]
    return distributed_data_loader(NumberTokenizer(), B, T, "train", data_dir=data_dir, rank=0, world_size=1,
                                   resume_state=resume_state)


# ---------------------------------------------------------------------------------------------------------------
# Stage 5 — tasks and evaluation (after lesson L05). Plain Python and one tensor; no model, no data download.


def run_extract_answer(text) -> str | None:
    """The final answer of a GSM8K-style solution: the number written right after the first "#### " (four hash
    marks and one space), made of an optional minus sign, then digits, dots and commas. Return it as a string
    without its commas and without full stops at its end ("#### 1,234." -> "1234"), or None when there is no such
    number. Never raises: anything that is not a str gives None."""
    if COURSE:
        from nanochat.tasks import extract_answer
        return extract_answer(text)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_extract_answer to your answer extractor")


def run_categorical_choice(logits, prompt_lengths: list[int], letter_ids: list[list[int]]) -> list[int]:
    """Multiple choice from one forward pass. `logits` (B, T, V) came from a right-padded batch whose row b holds a
    prompt of prompt_lengths[b] tokens (ending with <|assistant_start|>, then padding); letter_ids[b] lists the
    token ids of row b's answer letters. For each row return the index, into letter_ids[b], of the letter the model
    ranks highest as the next token after the prompt."""
    if COURSE:
        # the course's evaluator works on conversations, a tokenizer and a model: hand it stand-ins that replay
        # these logits, and name each letter "row:index" so a letter maps back to its token id and position
        from types import SimpleNamespace
        from nanochat.chat_eval import categorical_predictions

        class ReplayTokenizer:
            def render_for_completion(self, conversation): return [0] * conversation["length"]
            def get_bos_token_id(self): return 0
            def encode(self, letter):
                b, j = map(int, letter.split(":"))
                return [letter_ids[b][j]]

        class ReplayModel:
            config = SimpleNamespace(sequence_len=logits.size(1), vocab_size=logits.size(2))
            rotary_seq_len = logits.size(1)
            def get_device(self): return logits.device
            def __call__(self, idx): return logits[:idx.size(0)]

        convs = [{"length": n, "letters": [f"{b}:{j}" for j in range(len(ids))]}
                 for b, (n, ids) in enumerate(zip(prompt_lengths, letter_ids))]
        preds = categorical_predictions(convs, ReplayTokenizer(), ReplayModel())
        return [c["letters"].index(p) for c, p in zip(convs, preds)]
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_categorical_choice to your categorical scorer")


def run_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k of one problem estimated from n samples of which c passed: the probability that k samples drawn
    WITHOUT replacement from those n include at least one that passed (the unbiased estimator of the chance that
    k fresh samples include a pass). A float in [0, 1]; raise ValueError unless 0 <= c <= n and 1 <= k <= n."""
    if COURSE:
        from nanochat.chat_eval import pass_at_k
        return pass_at_k(n, c, k)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_pass_at_k to your pass@k estimator")


# ---------------------------------------------------------------------------------------------------------------
# Stage 6 — midtraining: conversations packed into rows, an exact resume, the LR by data progress (after lesson L06).
# Token ids in, batches and numbers out; no model, no files.


def run_mid_loader(convs, B: int, T: int, slot: int = 0, n_slots: int = 1, resume_state=None):
    """A generator of (inputs, targets, state, progress), forever, for data slot `slot` of `n_slots`. `convs` are
    rendered conversations, each a pair (ids, mask) as a chat renderer returns them (ids start with BOS). The slot
    reads conversations slot, slot + n_slots, slot + 2*n_slots, ... (indices modulo len(convs): after the last one
    it goes round again, the next epoch); its token stream is their ids, concatenated. Each batch is the next
    B*T+1 tokens of that stream: inputs the first B*T, targets the last B*T, both (B, T) int64; it uses B*T of them
    (the last target is the next batch's first input). Midtraining trains on every token: the masks are not used.
    `state` is where the NEXT batch starts, small and JSON-serialisable; a generator started with
    resume_state=state yields exactly the batches that would have followed. `progress` is (i + 1) / len(convs),
    where i = slot + j*n_slots (not reduced modulo len(convs)) for the slot's j-th conversation (j = 0, 1, ...)
    that holds the batch's last target: >= 1 once the slot has read its share of the data."""
    if COURSE:
        from nanochat.midtrain import packed_batches

        class Rendered:   # the conversations come rendered: the course's loader only has to pack them
            def render_conversation(self, conversation, max_tokens=None): return conversation

        return packed_batches(convs, Rendered(), B, T, slot, n_slots, "cpu", resume_state)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_mid_loader to your packed conversation loader")


def run_mid_schedule(data_progress, num_iterations: int = -1, warmdown_ratio: float = 0.2, final_lr_frac: float = 0.0,
                     start_step: int = 0) -> list[float]:
    """The LR multiplier of every optimizer step a midtraining run takes, from step `start_step` (a resumed run) on.
    `data_progress` is an iterator: its next value is the data progress after the next step's batches (the largest
    progress of the step's micro-batches, already agreed over ranks); take one value per step. With
    num_iterations <= 0 the run is one epoch: a step's progress is its data progress, and the run stops after the
    step whose progress reaches 1. With num_iterations > 0 the steps count instead: step i's progress is
    (i + 1) / num_iterations and the run stops after step num_iterations - 1. The multiplier of a progress p is 1
    until p = 1 - warmdown_ratio, then linear down to final_lr_frac at p = 1, and final_lr_frac beyond."""
    if COURSE:
        from nanochat.midtrain import mid_progress, mid_lr_multiplier
        out, step = [], start_step
        for p in data_progress:
            progress, last = mid_progress(p, step, num_iterations)
            out.append(mid_lr_multiplier(progress, warmdown_ratio, final_lr_frac))
            if last: return out
            step += 1
        return out
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_mid_schedule to your progress-driven LR schedule")


# ---------------------------------------------------------------------------------------------------------------
# Stage 7 — supervised fine-tuning (after lesson L07). Token ids in, tensors out; a small model given by the grader.


def run_sft_collate(rows, pad_id: int):
    """Collate a batch of rendered conversations for SFT. Each row is a list of segments (kind, ids), in order, with
    kind one of "bos", "user" (<|user_start|> text <|user_end|>), "assistant_start", "text" (assistant text),
    "python" (<|python_start|> expression <|python_end|>), "output" (<|output_start|> result <|output_end|>) and
    "assistant_end". Return (inputs, targets), two int64 tensors of shape (B, L-1), L = the longest row: inputs are
    each row's ids without its last token, right-padded with `pad_id`; targets are the ids the model must predict at
    each position where the assistant writes that token, and -1 everywhere else (padding included)."""
    if COURSE:
        from nanochat.sft import collate_sft
        # the course's render_conversation gives these segments this mask (1 = the assistant writes it)
        written = {"bos": 0, "user": 0, "assistant_start": 0, "text": 1, "python": 1, "output": 0, "assistant_end": 1}
        rendered = [([i for _, ids in row for i in ids], [written[k] for k, ids in row for _ in ids]) for row in rows]
        return collate_sft(rendered, pad_id)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_sft_collate to your SFT collation")


def run_sft_backward(model, micro_batches) -> float:
    """Accumulate the gradients of ONE optimizer step made of `micro_batches` [(inputs, targets), ...] (as collated
    above) into `model`'s parameters (.grad; they start at None): call backward once per micro-batch. `model(inputs)`
    returns logits (B, T, V) in float32. The step's loss must weigh every supervised token (target != -1) the same,
    whatever micro-batch it falls in. Return the step's loss as a float."""
    if COURSE:
        from nanochat.sft import sft_backward
        total, n = sft_backward(model, micro_batches)
        return total / max(n, 1)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_sft_backward to your masked SFT loss")


# ---------------------------------------------------------------------------------------------------------------
# Stage 8 — the policy-gradient loss of RL (after lesson L08). Plain lists and float tensors in, tensors out.


def run_rl_targets(sequences: list[list[int]], masks: list[list[int]], pad_id: int):
    """Rows of prompt + generated token ids, and per row a 0/1 mask: 1 where the policy sampled the token, 0 on the
    prompt and on tool output forced into the text. Right-pad every row with `pad_id` to the longest row's length T
    and return (inputs, targets), two int64 tensors (rows, T - 1): inputs = ids[:, :-1]; targets[i, t] = ids[i, t+1]
    where token t+1 of row i was sampled by the policy, else -1 (ignored by the loss)."""
    if COURSE:
        from nanochat.rl import collate
        return collate(sequences, masks, pad_id)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_rl_targets to your RL collation")


def run_group_advantages(rewards, group_size: int, std_adv: bool = False):
    """`rewards` (rows,) float: consecutive blocks of `group_size` rows are samples of the same question. Return the
    advantages (rows,): each reward minus the mean reward of its block; with `std_adv`, then divided by the block's
    population standard deviation + 1e-6."""
    if COURSE:
        import torch
        from nanochat.rl import group_advantages
        return torch.cat([group_advantages(g, std_adv).to(rewards.dtype) for g in rewards.split(group_size)])
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_group_advantages to your advantages")


def run_pg_loss(logp, targets, advantages, num_tokens: int):
    """The policy-gradient loss of one micro-batch: logp (rows, T) float, the log-probability of each target token;
    targets (rows, T) int, -1 where the position is not trained; advantages (rows,); num_tokens: the number of trained
    positions in the whole optimizer step (every micro-batch, every rank). Returns a differentiable scalar:
    −(Σ over trained positions of advantage[row] · logp) / num_tokens."""
    if COURSE:
        from nanochat.rl import pg_loss
        return pg_loss(logp, targets, advantages, num_tokens)[0]
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_pg_loss to your policy-gradient loss")


# ---------------------------------------------------------------------------------------------------------------
# Stage 9 — CORE's multiple-choice scorer (after lesson L09). A model in, one float per choice out.


def run_score_choices(model, bos_id: int, context: list[int], choices: list[list[int]]) -> list[float]:
    """Score the answers of one multiple-choice question the way CORE does. `model(idx)` maps token ids (B, T)
    (a LongTensor) to logits (B, T, V); `context` and every `choices[i]` are token ids. Return, per choice, the
    model's average loss (mean cross-entropy, in nats per token) on that choice's tokens when they follow BOS and
    the context. The predicted answer is then the choice with the lowest score."""
    if COURSE:
        from nanochat.evaluate import score_sequences
        seqs = [[bos_id] + list(context) + list(c) for c in choices]
        spans = [(len(s) - len(c), len(s)) for s, c in zip(seqs, choices)]
        return score_sequences(model, seqs, spans, pad_id=bos_id)[0]
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_score_choices to your multiple-choice scorer")


# ---------------------------------------------------------------------------------------------------------------
# Stage 10 — serving (after lesson L10). Token ids and tensors in, text and tensors out; no server needed.


def run_stream_text(token_ids: list[int], decode, stop: list[str]) -> list[str]:
    """Stream a reply safely. Tokens arrive one at a time; after EACH token return the text that may be sent now
    ('' if none), then one last entry with what is left when the stream ends. `decode(ids) -> str` decodes a list of
    ids (an unfinished UTF-8 character decodes to U+FFFD). Rules: never send part of a character (wait while the
    pending tokens decode to text ending in U+FFFD, at most 4 tokens: after that send it as it is); cut the reply
    before the first occurrence of any string in `stop` and send nothing after it; never send text that could still
    be the beginning of a stop string, but send everything else as soon as possible."""
    if COURSE:
        from nanochat.serve import TextStream
        ts = TextStream(decode, stop)
        return [ts.push(t) for t in token_ids] + [ts.finish()]
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_stream_text to your streaming text decoder")


def run_ragged_attention(q, k, v, pos):
    """The attention of one batched decode step. q (B, H, 1, D): one new query per row; k, v (B, H_kv, T, D): each
    row's cache slot, valid at positions 0..pos[b] (the new token's key and value already written at pos[b]) and
    holding garbage after that; pos (B,) int64. H is a multiple of H_kv (query head h uses KV head h // (H // H_kv)).
    Return the attention output (B, H, 1, D), scores scaled by 1/sqrt(D), each row attending only to its own prefix."""
    if COURSE:
        from nanochat.serve import ragged_attention
        return ragged_attention(q, k, v, pos)
    raise NotImplementedError("lessons/capstone/adapters.py: wire run_ragged_attention to your batched decode attention")
