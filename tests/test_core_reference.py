"""CORE as upstream nanochat scores it: the course's batched scorer (procedure="reference", the default) makes the same
decision on every example as a one-example-at-a-time transcription of the reference (tests/core_reference.py), and
bad input gets a clear error or a documented clamp:
a row without a field its task type needs is an error; --max-per-task above the task's size takes the whole task
(said on the output); K-shot prompts with fewer than K + 1 examples kept use as many shots as there are other
examples, with a warning (the reference stops with an error there).

Default tier: every offline task at --max-per-task 24 with a tiny random model. Slow tier (NANOCHAT_TEST_FLAGS=slow):
unlimited (every example) on a subset of tasks, one per task type and shot count (arc_challenge, openbook_qa,
winogrande, jeopardy); all 13 unlimited are ~45,000 examples, hours of one-at-a-time scoring on a 2-core CPU.
"""
import os, json, random
import pytest
import torch

from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import Tokenizer
from nanochat.evaluate import (offline_tasks, evaluate_task, evaluate_core, fewshot_indices, read_rows, TaskSpec, main)
from tests.core_reference import reference_decisions, compare

SLOW = "slow" in os.environ.get("NANOCHAT_TEST_FLAGS", "")


@pytest.fixture(scope="module")
def tok():
    from nanochat.dataset import pydoc_topics
    return Tokenizer.train_from_iterator(["\n\n".join(pydoc_topics())[:200_000]], vocab_size=512)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # sequence_len 128: 10-shot prompts pass 128 tokens (the reference does not crop them) and some pass the rotary
    # cache of 1,280 (the documented clamp), so both paths are exercised
    m = GPT(GPTConfig(sequence_len=128, vocab_size=512, n_layer=2, n_head=2, n_kv_head=1, n_embd=64))
    m.init_weights()
    for p in m.parameters(): torch.nn.init.normal_(p, std=0.1)   # not a zero lm_head: no all-way ties
    return m.eval()


@pytest.fixture(scope="module")
def tasks():
    return offline_tasks()


def test_every_offline_task_24(model, tok, tasks):
    torch.set_num_threads(1)
    res = compare(model, tok, tasks, 24, log=None)
    assert len(res) == 13
    bad = {k: v for k, v in res.items() if not v[2]}
    assert not bad, bad


@pytest.mark.skipif(not SLOW, reason="slow: NANOCHAT_TEST_FLAGS=slow runs it")
def test_unlimited_subset(model, tok, tasks):
    some = [t for t in tasks if t[0].label in ("arc_challenge", "openbook_qa", "winogrande", "jeopardy")]
    res = compare(model, tok, some, -1, log=None)
    assert all(v[2] for v in res.values()), res


def test_ties_go_to_the_first_choice(tok):
    # a zero lm_head: every choice costs exactly ln V per token, so every example is a tie; both pick choice 0
    torch.manual_seed(0)
    m = GPT(GPTConfig(sequence_len=128, vocab_size=512, n_layer=1, n_head=2, n_kv_head=1, n_embd=64))
    m.init_weights(); m.eval()
    rows = [{"query": f"Q{i}", "choices": ["a b", "c", "d e f"], "gold": i % 3} for i in range(30)]
    acc, ours = evaluate_task(m, tok, rows, TaskSpec("t", "multiple_choice", 2, 1 / 3), details=True)
    ref, _ = reference_decisions(m, tok, rows, "multiple_choice", 2)
    assert ours == ref
    shuffled = list(rows); random.Random(1337).shuffle(shuffled)
    assert ours == [int(r["gold"] == 0) for r in shuffled]


def test_fewshot_positions_match_sampling_the_list():
    for n, k in ((11, 10), (50, 10), (1000, 3)):
        for i in (0, 5, n - 1):
            want = random.Random(1234 + i).sample([j for j in range(n) if j != i], k)
            assert fewshot_indices(i, n, k) == want


# ---- bad input -------------------------------------------------------------------------------------------------

def test_row_missing_a_field(model, tok):
    rows = [{"query": "Q", "choices": ["a", "b"], "gold": 1}] * 5 + [{"query": "Q", "choices": ["a", "b"]}]
    with pytest.raises(ValueError, match=r"row 5: missing \['gold'\]"):
        evaluate_task(model, tok, rows, TaskSpec("demo", "multiple_choice", 0, 0.5))
    lines = [json.dumps(r) for r in rows]
    with pytest.raises(ValueError, match=r"demo: 1 malformed row\(s\) of 6 \(row 6: missing \['gold'\]\)"):
        read_rows(lines, "multiple_choice", "demo")
    assert len(read_rows(lines, "multiple_choice", "demo", skip_bad=True)[0]) == 5   # the opt-in, reported skip


def test_max_per_task_larger_than_the_task(model, tok, tasks, capsys):
    spec, rows = next(t for t in tasks if t[0].label == "winogrande")
    few = rows[:20]
    assert evaluate_task(model, tok, few, spec, max_per_task=500, details=True) == evaluate_task(model, tok, few, spec, details=True)
    out = evaluate_core(model, tok, [(spec, few)], max_per_task=500, log=print)
    assert out["results"]["winogrande"]["n"] == 20
    assert "500 asked, the task has 20: all used" in capsys.readouterr().out


def test_more_shots_than_the_task(model, tok, tasks, capsys):
    spec, rows = next(t for t in tasks if t[0].label == "arc_easy")   # 10-shot
    with pytest.raises(ValueError, match="10 few-shot examples need at least 11 examples in the task, it has 8"):
        fewshot_indices(0, 8, 10)
    # a documented clamp (the reference stops): 8 kept -> 7-shot prompts, said on the output
    assert 0 <= evaluate_task(model, tok, rows, spec, max_per_task=8) <= 1
    assert "arc_easy: 10-shot prompts need 11 examples, 8 kept: 7-shot prompts instead" in capsys.readouterr().out
    assert 0 <= evaluate_task(model, tok, rows, spec, max_per_task=11) <= 1   # 10 others: enough, no warning
    assert "warning" not in capsys.readouterr().out
    evaluate_task(model, tok, rows[:1], spec)
    assert "1 kept: 0-shot prompts" in capsys.readouterr().out


def test_unknown_procedure(model, tok, tasks):
    spec, rows = tasks[0]
    with pytest.raises(ValueError, match="procedure 'upstream'"):
        evaluate_task(model, tok, rows, spec, max_per_task=4, procedure="upstream")


def test_course_procedure_still_runs(model, tok, tasks):
    # the named variant: shots from the whole task, stripped LM answers, crop to the trained context
    for spec, rows in tasks[:3]:
        assert 0 <= evaluate_task(model, tok, rows, spec, max_per_task=8, procedure="course") <= 1
