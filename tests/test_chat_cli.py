"""`python -m scripts.chat_cli` end to end, as a user runs it: a tiny model saved as an SFT checkpoint in a private
base dir, the interactive mode driven through stdin (history, `clear`, `quit`), `-p`, and the missing-model error."""
import inspect, json, os, subprocess, sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nanochat.checkpoint import save_checkpoint
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("chat_cli")
    tok = Tokenizer.train_from_iterator([inspect.getsource(json.decoder), inspect.getsource(subprocess)], vocab_size=300)
    tok.save(base / "tokenizer")
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(2, tok.get_vocab_size(), 64)); model.init_weights()
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(base / "chatsft_checkpoints" / "d2", 5, model.state_dict(), None, dict(model_config=asdict(model.config)))
    return base

def run(base, args, stdin=""):
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scripts.chat_cli", "--device-type", "cpu", "-m", "8", *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=300, env=env)

def test_interactive_history_clear_quit(base_dir):
    r = run(base_dir, [], stdin="Hello there\nAnd again\nclear\nHi\nquit\nnever read\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "step 5" in out                                   # says which model it loaded
    assert out.count("Assistant: ") == 3                     # three replies: 'quit' ended the loop before the last line
    assert "(new conversation)" in out

def test_single_prompt_and_greedy_is_deterministic(base_dir):
    a, b = run(base_dir, ["-p", "Hello", "-t", "0"]), run(base_dir, ["-p", "Hello", "-t", "0"])
    assert a.returncode == 0 and b.returncode == 0, a.stderr
    assert a.stdout == b.stdout and "User:" not in a.stdout

def test_missing_stage_names_the_command(base_dir):
    r = run(base_dir, ["-i", "mid", "-p", "hi"])
    assert r.returncode == 2
    assert "python -m scripts.mid_train" in r.stderr and "Traceback" not in r.stderr
