"""`--loss-norm=reference` of chat_sft and chat_rl against upstream nanochat's formulas, transcribed by hand here
(karpathy/nanochat at commit 4a87a0d, scripts/chat_sft.py and scripts/chat_rl.py), and 2 gloo ranks = 1 process.

* SFT, upstream: per micro-batch the model's mean loss over that micro-batch's supervised tokens, divided by the
  micro-steps of the rank; the optimizers average over ranks. The step's loss is the mean of all micro-batch means.
* RL, upstream: per question, its group in passes of device_batch_size rows; per pass −Σ A·log π over the sampled
  tokens of the pass, divided by (the pass's sampled tokens × passes per question × questions per rank).

Each test prints the largest difference it found (run with -s to see them).
"""
import json, os, subprocess, sys, tempfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

CONVS = [
    {"messages": [{"role": "user", "content": "Hi! Who are you?"},
                  {"role": "assistant", "content": "I am nanochat, a small language model trained from scratch."}]},
    {"messages": [{"role": "user", "content": "Which is a fruit? A or B"}, {"role": "assistant", "content": "A"}]},
    {"messages": [{"role": "user", "content": "What is 12 times 7?"},
                  {"role": "assistant", "content": [{"type": "text", "text": "12 times 7 is "},
                                                    {"type": "python", "text": "12*7"},
                                                    {"type": "python_output", "text": "84"},
                                                    {"type": "text", "text": "84.\n#### 84"}]}]},
    {"messages": [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}]},
]

TOY_TASK = '''
import sys, re
from nanochat.tasks import Arithmetic
class HasDigit(Arithmetic):
    "Arithmetic questions, and a toy reward a random model earns about half the time: the completion has a digit."
    def evaluate(self, conversation, completion): return int(re.search(r"[0-9]", completion) is not None)
TASKS = (HasDigit(split="train", size=64), HasDigit(split="test", size=8))
if __name__ == "__main__":
    from nanochat.common import run_cli
    from nanochat.rl import train, parse_args
    run_cli(lambda argv: train(parse_args(argv), tasks=TASKS), sys.argv[1:])
'''


def _tiny_gpt(vocab_size, seed=0):
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    m = GPT(GPTConfig(sequence_len=128, vocab_size=vocab_size, n_layer=2, n_head=1, n_kv_head=1, n_embd=64))
    m.init_weights()
    with torch.no_grad():   # init_weights zeroes the head and the residual projections: give the model opinions
        for p in m.parameters():
            if p.ndim == 2 and not p.any(): p.normal_(0, 1.0 / p.size(1) ** 0.5)
    return m


@pytest.fixture(scope="module")
def base():
    from nanochat.tokenizer import Tokenizer
    from nanochat.tasks import Arithmetic, message_text
    from nanochat.checkpoint import save_checkpoint
    d = Path(tempfile.mkdtemp(prefix="nanochat_lossnorm_"))
    os.environ["NANOCHAT_BASE_DIR"], os.environ["NANOCHAT_TASKS"] = str(d), "offline"
    texts = [message_text(m) for i in range(300) for m in Arithmetic(split="train")[i]["messages"]]
    tok = Tokenizer.train_from_iterator(texts + [json.dumps(c) for c in CONVS] * 20, vocab_size=300)
    tok.save(d / "tokenizer")
    m = _tiny_gpt(tok.get_vocab_size())
    save_checkpoint(d / "mid_checkpoints" / "d2", 0, m.state_dict(), None, dict(model_config=asdict(m.config)))
    save_checkpoint(d / "chatsft_checkpoints" / "rlsrc", 0, m.state_dict(), None, dict(model_config=asdict(m.config)))
    (d / "convs.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONVS))
    (d / "rl_toy.py").write_text(TOY_TASK)
    return d, tok


def _torchrun(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                       cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"torchrun failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _max_weight_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# ---------------------------------------------------------------------------------------------------------- SFT
SFT = ["--device-batch-size=1", "--target-examples-per-step=4", "--init-lr-frac=1.0", "--device-type=cpu",
       "--eval-every=-1", "--eval-metrics-every=-1", "--log-every=100", "--loss-norm=reference"]


def _sft_micro_batches(tok, step=0, E=4, B=1, T=128):
    "The micro-batches chat_sft trains on at `step` (slot k: conversations step·E + k·B ...), in slot order."
    from nanochat.sft import collate_sft, render_for_sft
    pad = tok.encode_special("<|assistant_end|>")
    return [collate_sft([render_for_sft(CONVS[(step * E + k * B + j) % len(CONVS)], tok, T)[:2] for j in range(B)], pad)
            for k in range(E // B)]


def test_sft_reference_equals_upstream_transcribed(base):
    d, tok = base
    from nanochat.sft import sft_backward
    batches = _sft_micro_batches(tok)
    assert len({int((y >= 0).sum()) for _, y in batches}) > 2, "the test needs micro-batches of unequal supervised tokens"
    m_ours, m_up = _tiny_gpt(tok.get_vocab_size()), _tiny_gpt(tok.get_vocab_size())
    total, _ = sft_backward(m_ours, batches, loss_norm="reference")
    ours_loss = total / len(batches)
    up_loss = 0.0
    for x, y in batches:                         # upstream: loss = model(x, y); loss / grad_accum_steps; backward
        loss = m_up(x, y) / len(batches)
        loss.backward(); up_loss += loss.item()
    dl = abs(ours_loss - up_loss)
    dg = max((p.grad - q.grad).abs().max().item() for p, q in zip(m_ours.parameters(), m_up.parameters()))
    print(f"\nSFT reference vs upstream transcribed: loss {ours_loss:.6f} vs {up_loss:.6f}, "
          f"max |loss diff| {dl:.2e}, max |grad diff| {dg:.2e}")
    assert dl < 1e-6 and dg < 1e-6
    # and the step normalisation really is a different thing on these micro-batches
    m_step = _tiny_gpt(tok.get_vocab_size())
    t_step, n = sft_backward(m_step, batches, loss_norm="step")
    assert abs(t_step / n - up_loss) > 1e-3


def test_sft_reference_first_steps_of_chat_sft(base):
    "The train loss chat_sft logs at steps 0-2 equals the transcription on the same micro-batches and weights."
    d, tok = base
    from nanochat.sft import main
    from nanochat.checkpoint import load_model
    out = main(SFT + [f"--train-data={d / 'convs.jsonl'}", f"--val-data={d / 'convs.jsonl'}", "--num-iterations=3",
                      "--model-tag=d2", "--save-every=1"])
    worst = 0.0
    for step in range(3):
        m = _tiny_gpt(tok.get_vocab_size()) if step == 0 else load_model("sft", "cpu", model_tag="d2", step=step)[0]
        with torch.no_grad():
            up = sum(m(x, y).item() for x, y in _sft_micro_batches(tok, step)) / 4
        worst = max(worst, abs(out["history"][step]["train_loss"] - up))
    print(f"\nchat_sft --loss-norm=reference, steps 0-2: max |logged loss - upstream transcribed| {worst:.2e}")
    assert worst < 1e-5


def test_sft_reference_two_ranks_equal_one_process(base):
    d, tok = base
    from nanochat.sft import main
    data = [f"--train-data={d / 'convs.jsonl'}", f"--val-data={d / 'convs.jsonl'}", "--num-iterations=4"]
    from nanochat.checkpoint import save_checkpoint
    m = _tiny_gpt(tok.get_vocab_size())
    for tag in ("one", "two"):
        save_checkpoint(d / "mid_checkpoints" / tag, 0, m.state_dict(), None, dict(model_config=asdict(m.config)))
    _torchrun(["-m", "scripts.chat_sft", "--", *SFT, *data, "--model-tag=two"], ROOT)
    one = main(SFT + data + ["--model-tag=one"])
    two = [json.loads(l) for l in open(d / "chatsft_checkpoints" / "two" / "train_log.jsonl")]
    two = [r["train_loss"] for r in two if "train_loss" in r]
    dl = max(abs(a - b) for a, b in zip(two, [r["train_loss"] for r in one["history"]]))
    sd1 = torch.load(d / "chatsft_checkpoints" / "one" / "model_000004.pt")
    sd2 = torch.load(d / "chatsft_checkpoints" / "two" / "model_000004.pt")
    dw = _max_weight_diff(sd1, sd2)
    print(f"\nSFT reference, 2 ranks vs 1 process, 4 steps: max |loss diff| {dl:.2e}, max |weight diff| {dw:.2e}")
    assert len(two) == 4 and dl < 1e-5 and dw < 1e-4


# ----------------------------------------------------------------------------------------------------------- RL
RL = ["--device-type=cpu", "--examples-per-step=2", "--num-samples=4", "--device-batch-size=2", "--max-new-tokens=8",
      "--eval-examples=2", "--pass-k=2", "--eval-every=0", "--init-lr-frac=1.0", "--loss-norm=reference", "--model-tag=rlsrc"]


def _upstream_rl_step(model, groups, dbs, examples_per_rank, pad):
    "Upstream's update transcribed: per question pad the group, slice passes, −Σ A·logp / (tokens × passes × questions)."
    from nanochat.rl import collate
    total = 0.0
    for seqs, masks, adv in groups:
        x_all, y_all = collate(seqs, masks, pad)
        a_all, passes = torch.tensor(adv), len(seqs) // dbs
        for k in range(passes):
            sl = slice(k * dbs, (k + 1) * dbs)
            x, y, a = x_all[sl], y_all[sl], a_all[sl]
            logp = -model(x, y, loss_reduction="none").view(x.shape)
            loss = -(logp * a[:, None]).sum() / ((y >= 0).sum().clamp(min=1) * passes * examples_per_rank)
            loss.backward(); total += loss.item()
    return total


def _groups(model, tok, task, step, n_questions, num_samples, dbs, seed=42, max_new_tokens=8):
    "The groups chat_rl samples at `step` (same seeds as its loop)."
    from nanochat.rl import sample_group, group_advantages, rollout_seed
    from nanochat.engine import Engine
    engine, out = Engine(model, tok), []
    model.eval()
    for q in range(step * n_questions, (step + 1) * n_questions):
        g = sample_group(engine, tok, task[q % len(task)], task.reward, num_samples, dbs, max_new_tokens, 1.0, 50,
                         seed=rollout_seed(seed, 0, step, q))
        out.append((g["sequences"], g["masks"], group_advantages(g["rewards"]).tolist()))
    model.train()
    return out


def test_rl_reference_equals_upstream_transcribed(base):
    d, tok = base
    from nanochat.rl import rl_batches, pg_loss, token_logprobs
    pad = tok.encode_special("<|assistant_end|>")
    model = _tiny_gpt(tok.get_vocab_size())
    from nanochat.tasks import Arithmetic
    groups = _groups(model, tok, Arithmetic(split="train"), 0, 3, 8, 4, max_new_tokens=12)
    # advantages made non-zero on every row, so that every pass contributes
    groups = [(s, m, [a + 0.1 * (i - 3.5) for i, a in enumerate(adv)]) for s, m, adv in groups]
    batches, factor, _ = rl_batches(groups, 4, pad, "reference", examples_per_rank=3)
    ours = 0.0
    for x, y, a, div in batches:
        loss = pg_loss(token_logprobs(model, x, y), y, a, div)[0] * factor
        loss.backward(); ours += loss.item()
    g_ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    up = _upstream_rl_step(model, groups, 4, 3, pad)
    dl = abs(ours - up)
    dg = max((p.grad - q).abs().max().item() for p, q in zip(model.parameters(), g_ours))
    print(f"\nRL reference vs upstream transcribed: loss {ours:.6f} vs {up:.6f}, max |loss diff| {dl:.2e}, max |grad diff| {dg:.2e}")
    assert dl < 1e-6 and dg < 1e-6


def test_rl_reference_first_step_and_two_ranks(base):
    "chat_rl's logged loss of step 0 = the transcription on the same rollouts; 2 ranks = 1 process (loss and weights)."
    d, tok = base
    sys.path.insert(0, str(d))
    from rl_toy import TASKS
    from nanochat.rl import train, parse_args
    from nanochat.checkpoint import load_model
    _torchrun([str(d / "rl_toy.py"), *RL, "--num-steps=2", "--save-every=1", "--output-tag=two"], d)
    one = train(parse_args(RL + ["--num-steps=2", "--save-every=1", "--output-tag=one"]), tasks=TASKS)
    two = [json.loads(l) for l in open(d / "chatrl_checkpoints" / "two" / "train_log.jsonl") if '"reward"' in l]
    assert [r["reward"] for r in two] == [r["reward"] for r in one["history"]]
    dl = max(abs(a["loss"] - b["loss"]) for a, b in zip(two, one["history"]))
    dw = max(_max_weight_diff(load_model("rl", "cpu", model_tag="one", step=s)[0].state_dict(),
                              load_model("rl", "cpu", model_tag="two", step=s)[0].state_dict()) for s in (1, 2))
    model = load_model("sft", "cpu", model_tag="rlsrc")[0]
    groups = _groups(model, tok, TASKS[0], 0, 2, 4, 2)
    up = _upstream_rl_step(model, groups, 2, 2, tok.encode_special("<|assistant_end|>"))
    d0 = abs(one["history"][0]["loss"] - up)
    print(f"\nchat_rl --loss-norm=reference: step 0 |logged loss - upstream transcribed| {d0:.2e}; "
          f"2 ranks vs 1 process: max |loss diff| {dl:.2e}, max |weight diff| {dw:.2e}")
    assert d0 < 1e-6 and dl < 1e-6 and dw < 1e-5
