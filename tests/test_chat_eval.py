"Bad input and edge cases for nanochat.chat_eval and scripts.chat_eval (the lessons are in nbs/05c_chat_eval.ipynb)."
import os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
from nanochat.tokenizer import Tokenizer, merges_to_ranks, train_bpe
from nanochat.chat_eval import (pass_at_k, chatcore, letter_token_ids, categorical_predictions, run_categorical_eval,
                                run_generative_eval, parse_args, CHAT_TASKS)

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_ranks(merges_to_ranks(train_bpe("the answer is A or B or C, not D. " * 30, 300)))

class Const(torch.nn.Module):
    "A stand-in GPT with the same logits everywhere."
    def __init__(self, V, prefs=None):
        super().__init__()
        self.config, self.rotary_seq_len = SimpleNamespace(sequence_len=32, vocab_size=V, n_layer=1, n_head=1, n_kv_head=1, n_embd=2), 64
        self.bias = torch.zeros(V)
        for i, v in (prefs or {}).items(): self.bias[i] = v
    def get_device(self): return torch.device("cpu")
    def forward(self, idx, kv_cache=None):
        if kv_cache is not None: kv_cache.insert_kv(0, torch.zeros(idx.size(0), 1, idx.size(1), 2), torch.zeros(idx.size(0), 1, idx.size(1), 2))
        return self.bias.expand(*idx.shape, -1)

class Task:
    def __init__(self, items, evaluate): self.items, self._eval = items, evaluate
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]
    def evaluate(self, conv, completion): return self._eval(conv, completion)

def mc(question, gold, letters="ABCD"):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": gold}], "letters": list(letters)}

def test_pass_at_k_edges():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(200, 0, 100) == 0.0 and pass_at_k(200, 101, 100) == 1.0
    for bad in [(5, -1, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError): pass_at_k(*bad)

def test_chatcore_needs_all_six():
    assert chatcore({k: 0.5 for k in CHAT_TASKS[:5]}) is None
    assert chatcore({**{k: 0.5 for k in CHAT_TASKS}, "extra": 1.0}) == pytest.approx((3 * (0.25 / 0.75) + 3 * 0.5) / 6)

def test_multi_token_letter_is_refused(tok):
    assert len(letter_token_ids(tok, list("ABCD"))) == 4
    with pytest.raises(ValueError, match="single token"): letter_token_ids(tok, ["the answer"])

def test_too_long_prompt_scores_wrong(tok):
    model = Const(tok.get_vocab_size(), {tok.encode("A")[0]: 5.0})
    task = Task([mc("short?", "A"), mc("long " * 100, "A")], lambda c, p: int(p == c["messages"][-1]["content"]))
    d = {}
    assert categorical_predictions([task[1]], tok, model) == [None]
    assert run_categorical_eval(task, tok, model, details=d) == 0.5 and d == {"correct": 1, "total": 2, "too_long": 1}

def test_evaluate_that_raises_scores_wrong(tok, capsys):
    from nanochat.engine import Engine
    model = Const(tok.get_vocab_size(), {tok.encode_special("<|assistant_end|>"): 5.0})
    def boom(conv, completion): raise KeyError("no answer")
    task = Task([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}] * 3, boom)
    d = {}
    assert run_generative_eval(task, tok, model, Engine(model, tok), max_new_tokens=4, details=d) == 0.0
    assert d["total"] == 3 and "KeyError" in capsys.readouterr().out

def test_bad_arguments():
    with pytest.raises(SystemExit): parse_args(["-i", "sft", "-a", "ARC-Easy|gsm8k"])
    with pytest.raises(SystemExit): parse_args(["-i", "nope"])
    with pytest.raises(SystemExit): parse_args(["-i", "sft", "-n", "0"])
    args = parse_args(["--", "-i", "rl", "-a", "GSM8K | HumanEval", "--max_new_tokens", "64", "--top_k", "0"])
    assert args.tasks == ["GSM8K", "HumanEval"] and args.max_new_tokens == 64 and args.top_k == 0

def test_missing_checkpoint_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scripts.chat_eval", "-i", "mid"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "NANOCHAT_BASE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no mid model") and "python -m scripts.mid_train" in lines[0], r.stderr
