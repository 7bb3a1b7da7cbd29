"""Chat evaluation against upstream nanochat's procedure (karpathy/nanochat, scripts/chat_eval.py and tasks/*.py).

Each test transcribes one step of upstream's procedure in a few plain lines (written for this file, not copied) and
checks that the course's code gives the same prompts, letters, completions, judgements and averages, problem by
problem. Where the course deliberately differs (batch order, an unbiased pass@k extra, a lenient answer rule) the
test shows the difference cannot move a number, or that upstream's behaviour is the default."""
import inspect, random, re
import pytest
import torch
from nanochat import tasks as T, task_data as D
from nanochat.chat_eval import (run_categorical_eval, run_generative_eval, chatcore, parse_args, make_task, CHAT_TASKS,
                                CHATCORE_BASELINES)
from nanochat.engine import Engine
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import Tokenizer, merges_to_ranks, train_bpe


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOCHAT_TASKS", "offline")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))


@pytest.fixture(scope="module")
def tok():
    text = "Multiple Choice question: which is right? - the answer=A - not this=B - maybe=C - no=D - 1=E\n" * 20
    return Tokenizer.from_ranks(merges_to_ranks(train_bpe(text + "the cat sat on the mat. 12 + 7 = 19\n" * 20, 320)))


def tiny_gpt(vocab_size, seed=0, sequence_len=64):
    torch.manual_seed(seed)
    cfg = GPTConfig(sequence_len=sequence_len, vocab_size=vocab_size, n_layer=2, n_head=2, n_kv_head=1, n_embd=32)
    with torch.device("meta"): model = GPT(cfg)
    model.to_empty(device="cpu"); model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2 and not p.any(): p.normal_(0, 1.0 / p.size(1) ** 0.5)   # zero-initialised heads: give opinions
    return model.eval()


# ------------------------------------------------------------------------------------------------------------------
# Multiple choice: the prompt, the letters, the position, the decision rule

def reference_render_mc(question, letters, choices):
    "Upstream's multiple-choice user message, transcribed."
    s = "Multiple Choice question: " + question + "\n"
    for letter, choice in zip(letters, choices): s += "- " + choice + "=" + letter + "\n"
    return s + "\nRespond only with the letter of the correct answer."


def test_render_mc_is_the_reference_format():
    for q, letters, choices in [("Which?", "ABCD", ["a", "b b", "c=", " d "]), ("2+2?", ["1", "2", "3"], ["4", "5", "6"])]:
        assert T.render_mc(q, list(letters), choices) == reference_render_mc(q, list(letters), choices)


def test_mmlu_and_arc_letters():
    mmlu, arc = T.MMLU("all", "test"), T.ARC("ARC-Challenge", "test")
    assert all(mmlu[i]["letters"] == list("ABCD") for i in range(50))               # upstream: the fixed A-D
    for i in range(50):   # offline ARC is re-lettered A.. in order; the hub keeps the dataset's labels (test_tasks)
        c = arc[i]
        assert c["letters"] == list("ABCDE"[:len(c["letters"])]) and c["messages"][-1]["content"] in c["letters"]


class MCTask:
    "Multiple-choice problems of varied length and letter sets; `seen` records the letter submitted per problem."
    eval_type = "categorical"
    def __init__(self, n=40, seed=0):
        r, self.items, self.seen = random.Random(seed), [], {}
        for i in range(n):
            letters = [["A", "B", "C"], ["A", "B", "C", "D"], ["A", "B", "C", "D", "E"]][r.randrange(3)]
            choices = [" ".join(r.choice(["the", "cat", "sat", "mat", "on", "12"]) for _ in range(r.randint(1, 6))) for _ in letters]
            self.items.append({"messages": [{"role": "user", "content": T.render_mc(f"question {i}?", letters, choices)},
                                            {"role": "assistant", "content": r.choice(letters)}], "letters": letters, "index": i})
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]
    def evaluate(self, conv, completion):
        self.seen[conv["index"]] = completion
        return int(completion == conv["messages"][-1]["content"])


def reference_categorical(task, tokenizer, model, batch_size, max_problems=None):
    "Upstream's categorical loop on one rank, transcribed: consecutive batches, full (B, T, V) logits. -> letters"
    n = len(task) if max_problems is None else min(len(task), max_problems)
    bos, cache, letters_out = tokenizer.get_bos_token_id(), {}, []
    for b in range(-(-n // batch_size)):
        convs = [task[i] for i in range(b * batch_size, min((b + 1) * batch_size, n))]
        prompts = [tokenizer.render_for_completion(c) for c in convs]
        width = max(len(p) for p in prompts)
        with torch.no_grad():
            logits = model(torch.tensor([p + [bos] * (width - len(p)) for p in prompts], dtype=torch.long))
        for row, conv in enumerate(convs):
            ids = []
            for letter in conv["letters"]:
                if letter not in cache:
                    enc = tokenizer.encode(letter); assert len(enc) == 1; cache[letter] = enc[0]
                ids.append(cache[letter])
            pick = logits[row, len(prompts[row]) - 1, ids].argmax(dim=-1).item()
            letters_out.append(conv["letters"][pick])
    return letters_out


@pytest.mark.parametrize("max_problems", [None, 24])
def test_categorical_letters_equal_the_reference_procedure(tok, max_problems):
    model = tiny_gpt(tok.get_vocab_size())
    want = reference_categorical(MCTask(), tok, model, batch_size=1, max_problems=max_problems)   # one example at a time
    assert reference_categorical(MCTask(), tok, model, batch_size=8, max_problems=max_problems) == want   # upstream's batches
    assert len(set(want)) > 1, "the random model should not answer one letter everywhere (the test would be weak)"
    for batch_size in (1, 3, 8, 64):
        task = MCTask()
        acc = run_categorical_eval(task, tok, model, batch_size=batch_size, max_problems=max_problems)
        got = [task.seen[i] for i in range(len(want))]
        assert got == want, f"batch_size={batch_size}: per-problem letters differ from upstream's procedure"
        assert acc == sum(l == task[i]["messages"][-1]["content"] for i, l in enumerate(want)) / len(want)


class Recorded:
    "A real task whose evaluate also records the submitted letter per problem."
    def __init__(self, task): self.task, self.seen, self.eval_type = task, {}, task.eval_type
    def __len__(self): return len(self.task)
    def __getitem__(self, i): return {**self.task[i], "index": i}
    def evaluate(self, conv, completion): self.seen[conv["index"]] = completion; return self.task.evaluate(conv, completion)


@pytest.mark.parametrize("name", ["ARC-Easy", "ARC-Challenge", "MMLU"])
def test_real_categorical_tasks_equal_the_reference_procedure(tok, name):
    torch.manual_seed(0)
    cfg = GPTConfig(sequence_len=256, vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_kv_head=1, n_embd=32)
    with torch.device("meta"): model = GPT(cfg)
    model.to_empty(device="cpu"); model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2 and not p.any(): p.normal_(0, 1.0 / p.size(1) ** 0.5)
    model.eval()
    task = Recorded(make_task(name))
    want = reference_categorical(task, tok, model, batch_size=8, max_problems=24)
    acc = run_categorical_eval(task, tok, model, batch_size=5, max_problems=24)
    assert [task.seen[i] for i in range(24)] == want
    assert acc == sum(l == task[i]["messages"][-1]["content"] for i, l in enumerate(want)) / 24


class ConstLogits(torch.nn.Module):
    "Equal logits for every token everywhere: every letter ties."
    def __init__(self, V):
        super().__init__()
        self.config, self.rotary_seq_len = GPTConfig(sequence_len=64, vocab_size=V), 640
    def get_device(self): return torch.device("cpu")
    def forward(self, idx, kv_cache=None): return torch.zeros(*idx.shape, self.config.vocab_size)


def test_ties_pick_the_first_letter_like_the_reference(tok):
    model, task = ConstLogits(tok.get_vocab_size()), MCTask(n=12)
    run_categorical_eval(task, tok, model, batch_size=5)
    assert [task.seen[i] for i in range(12)] == reference_categorical(MCTask(n=12), tok, model, 8) == ["A"] * 12


# ------------------------------------------------------------------------------------------------------------------
# Generative: sampling settings, seed, any-of-n

class GenTask:
    "Open questions; a completion passes if it contains the letter e. `seen` records every completion per problem."
    eval_type = "generative"
    def __init__(self, n=6):
        self.items = [{"messages": [{"role": "user", "content": f"the cat {i} sat on"}, {"role": "assistant", "content": "x"}],
                       "index": i} for i in range(n)]
        self.seen = {}
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]
    def evaluate(self, conv, completion):
        self.seen.setdefault(conv["index"], []).append(completion)
        return int("e" in completion)


def reference_generative(task, tokenizer, engine, num_samples, max_new_tokens, temperature, top_k):
    "Upstream's generative loop on one rank, transcribed (it passes no seed: the engine's default). -> (passed, completions)"
    passed, completions = [], []
    for i in range(len(task)):
        conv = task[i]
        prompt = tokenizer.render_for_completion(conv)
        rows, _ = engine.generate_batch(prompt, num_samples=num_samples, max_tokens=max_new_tokens,
                                        temperature=temperature, top_k=top_k)
        texts = [tokenizer.decode(r[len(prompt):]) for r in rows]
        completions.append(texts)
        passed.append(any(task.evaluate(conv, t) for t in texts))
    return passed, completions


@pytest.mark.parametrize("temperature,num_samples", [(0.0, 1), (1.0, 3)])
def test_generative_equals_the_reference_procedure(tok, temperature, num_samples):
    model = tiny_gpt(tok.get_vocab_size(), seed=1)
    engine = Engine(model, tok)
    passed, completions = reference_generative(GenTask(), tok, engine, num_samples, 8, temperature, 50)
    task, d = GenTask(), {}
    acc = run_generative_eval(task, tok, model, engine, num_samples=num_samples, max_new_tokens=8,
                              temperature=temperature, top_k=50, details=d)
    assert [task.seen[i] for i in range(len(task))] == completions      # the same completions, sample for sample
    assert acc == sum(passed) / len(passed) and d["correct"] == sum(passed)   # any-of-n, as upstream counts
    if temperature > 0: assert 0 < sum(passed) < len(passed), "want a mix of passes and fails"
    assert set(d["pass_at_k_unbiased"]) == set(range(1, num_samples + 1))     # the extra, under its own name
    assert d["pass_at_k_unbiased"][num_samples] == pytest.approx(acc)         # pass@n of the estimator = any-of-n


@pytest.mark.parametrize("name", ["GSM8K", "SpellingBee", "HumanEval"])
def test_real_generative_tasks_equal_the_reference_procedure(tok, name):
    model = tiny_gpt(tok.get_vocab_size(), seed=2, sequence_len=256)   # 2,560 positions: room for every prompt here
    engine = Engine(model, tok)
    task = make_task(name)
    sub = [task[i] for i in range(3)]
    class Few:   # the first three problems, `seen` recording completions per problem
        eval_type, seen = "generative", {}
        def __len__(self): return 3
        def __getitem__(self, i): return {**sub[i], "index": i}
        def evaluate(self, conv, completion):
            Few.seen.setdefault(conv["index"], []).append(completion); return task.evaluate(conv, completion)
    passed, completions = reference_generative(Few(), tok, engine, 2, 6, 1.0, 50)
    Few.seen = {}
    acc = run_generative_eval(Few(), tok, model, engine, num_samples=2, max_new_tokens=6, temperature=1.0, top_k=50)
    assert [Few.seen[i] for i in range(3)] == completions and acc == sum(passed) / 3


def test_defaults_are_the_reference_defaults():
    a = parse_args(["-i", "sft"])
    assert (a.temperature, a.max_new_tokens, a.num_samples, a.top_k, a.batch_size, a.max_problems) == (0.0, 512, 1, 50, 8, None)
    assert a.tasks == ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee"] and a.answer_rule == "reference"
    sig = inspect.signature(run_generative_eval).parameters
    assert sig["seed"].default == 42 and sig["vary_seed"].default is False
    assert inspect.signature(Engine.generate_batch).parameters.get("seed") is None   # generate_batch passes generate's default...
    assert inspect.signature(Engine.generate).parameters["seed"].default == 42        # ...which is 42, as upstream's engine


# ------------------------------------------------------------------------------------------------------------------
# Judging a completion: GSM8K / SpellingBee `#### N`, HumanEval programs

def reference_extract(text):
    "Upstream's `#### N` reader, transcribed."
    m = re.search(r"#### (\-?[0-9\.\,]+)", text)
    return m.group(1).strip().replace(",", "") if m else None


def reference_answer_judge(gold_text, completion):
    return int(reference_extract(completion) == reference_extract(gold_text))


COMPLETIONS = ["#### 18", "#### 18.", "so #### 1,8", "#### -18", "#### 18 and #### 19", "The answer is 18", "####18",
               "#### 18.0", "#### .", "#### -.", "#### 1,234.", "", "x" * 500 + "#### 18", "#### 0018"]


def test_gsm8k_judgement_is_the_reference_judgement():
    gsm = make_task("GSM8K")
    assert gsm.answer_rule == "reference" and make_task("GSM8K", answer_rule="course").answer_rule == "course"
    r = random.Random(0)
    for i in range(len(gsm)):   # every offline test problem: its gold, and a few completions around it
        conv = gsm[i]
        last_text = conv["messages"][-1]["content"][-1]["text"]   # upstream reads the gold from the last text part
        gold = reference_extract(last_text)
        assert gold is not None
        cands = [f"#### {gold}", f"#### {gold}.", f"#### {r.randint(0, 99)}"] + (COMPLETIONS if i < 5 else [])
        for c in cands:
            assert gsm.evaluate(conv, c) == reference_answer_judge(last_text, c), (i, c)


def test_course_rule_differs_only_on_a_trailing_full_stop():
    conv = make_task("GSM8K")[0]
    gold = reference_extract(conv["messages"][-1]["content"][-1]["text"])
    course = T.GSM8K("test"); course.answer_rule = "course"
    for c in COMPLETIONS + [f"#### {gold}", f"#### {gold}.", f"#### {gold}..", f"so #### {gold}. Done"]:
        ref = reference_answer_judge(conv["messages"][-1]["content"][-1]["text"], c)
        if course.evaluate(conv, c) != ref:
            assert re.search(r"#### [0-9.,\-]*\.", c), f"rules differ on {c!r}, which has no trailing full stop"


def test_spellingbee_judgement_is_the_reference_judgement():
    bee = make_task("SpellingBee")
    for i in range(20):
        conv = bee[i]
        last_text = conv["messages"][-1]["content"][-1]["text"]
        n = reference_extract(last_text)
        for c in COMPLETIONS + [f"#### {n}", f"#### {n}.", f"I count {n}"]:
            assert bee.evaluate(conv, c) == reference_answer_judge(last_text, c), (i, c)


def reference_humaneval_program(prompt, test, entry_point, completion):
    "Upstream's HumanEval program, transcribed: leading imports, first fenced block (or all), tests, check()."
    imports = []
    for line in prompt.split("\n"):
        s = line.strip()
        if s.startswith("import ") or s.startswith("from "): imports.append(s)
        elif s and not s.startswith("#"): break
    blocks = re.findall(r"```(?:python)?\s*\n(.*?)\n```", completion, re.DOTALL)
    code = blocks[0].strip() if blocks else completion.strip()
    return "\n".join(imports) + "\n\n" + code + "\n\n" + test + "\n" + f"check({entry_point})"


def test_humaneval_program_is_the_reference_program():
    he = T.HumanEval()
    for i in range(len(he)):
        conv = he[i]
        prompt, gold = conv["messages"][0]["content"], conv["messages"][1]["content"]
        assert gold.startswith(prompt + "\n")       # upstream's gold: prompt, newline, canonical solution
        for c in [gold, f"Sure:\n```python\n{gold}```\nbye", f"```\n{gold}\n```", f"```py\n{gold}\n```", "    return 1\n",
                  f"```python\n{gold}", "text only", f"```python   \n\n{gold}\n```\n```python\nx=1\n```"]:
            assert he.program(conv, c) == reference_humaneval_program(prompt, conv["test"], conv["entry_point"], c), (i, c[:60])


def test_humaneval_gold_passes_the_sandbox():
    he = T.HumanEval()
    assert [he.evaluate(he[i], he[i]["messages"][1]["content"]) for i in range(3)] == [1, 1, 1]


# ------------------------------------------------------------------------------------------------------------------
# SpellingBee: same word, letter and answer per index as upstream, given the same word list

def reference_bee_draw(words, index, split):
    "Upstream's first draws for SpellingBee example `index`, transcribed: (word, letter, count)."
    rng = random.Random(index if split == "train" else 10_000_000 + index)
    word = rng.choice(words)
    letter = rng.choice(word) if rng.random() < 0.9 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    return word, letter, word.count(letter)


@pytest.mark.parametrize("split", ["train", "test"])
def test_spellingbee_draws_the_reference_word_and_letter(split):
    words = ["strawberry", "banana", "a", "mississippi", "queue", "rhythm", "bookkeeper", "aardvark"] * 3
    bee = T.SpellingBee(size=60, split=split)
    bee.words = words
    for i in range(60):
        call = bee[i]["messages"][1]["content"][1]
        assert call["type"] == "python"
        word, letter, count = reference_bee_draw(words, i, split)
        assert call["text"] == f"'{word}'.count('{letter}')", i
        assert T.extract_answer(T.message_text(bee[i]["messages"][1])) == str(count)


def test_hub_word_list_is_the_file_in_order(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOCHAT_TASKS", "hub")
    (tmp_path / "words_alpha.txt").write_text("pear\r\napple\na\n\ncherry\n", encoding="utf-8")
    D._WORDS.pop("hub", None)
    try: assert T.word_list() == ["pear", "apple", "a", "cherry"]   # upstream: each line stripped, file order
    finally: D._WORDS.pop("hub", None)


# ------------------------------------------------------------------------------------------------------------------
# ChatCORE

def reference_chatcore(results):
    "Upstream's ChatCORE, transcribed: only when all six ran; centred accuracies averaged over the tasks run."
    base = {"ARC-Easy": 0.25, "ARC-Challenge": 0.25, "MMLU": 0.25, "GSM8K": 0.0, "HumanEval": 0.0, "SpellingBee": 0.0}
    if not all(k in results for k in base): return None
    return sum((a - base.get(k, 0.0)) / (1.0 - base.get(k, 0.0)) for k, a in results.items()) / len(results)


def test_chatcore_is_the_reference_chatcore():
    assert CHATCORE_BASELINES == {"ARC-Easy": 0.25, "ARC-Challenge": 0.25, "MMLU": 0.25, "GSM8K": 0.0, "HumanEval": 0.0, "SpellingBee": 0.0}
    r = random.Random(0)
    for _ in range(100):
        res = {k: r.random() for k in CHAT_TASKS}
        assert chatcore(res) == pytest.approx(reference_chatcore(res), abs=1e-12)
    assert chatcore({k: 0.5 for k in CHAT_TASKS[:5]}) is None and reference_chatcore({k: 0.5 for k in CHAT_TASKS[:5]}) is None
