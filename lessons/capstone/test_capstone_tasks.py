"""Capstone stage 5 — tasks and evaluation: the GSM8K answer extractor, the categorical scorer, pass@k.

    pytest lessons/capstone/test_capstone_tasks.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_tasks.py   # the course's own implementation

The oracles: for the extractor, hand-made solutions and completions (GSM8K's own format, commas, signs, decimals,
junk) and, on every case, nanochat's `extract_answer`; for the categorical scorer, logits built so that every usual
mistake picks a different letter; for pass@k, an exact count over all k-subsets of the samples (small n, with
fractions) and the defining property of an unbiased estimator: averaged over the binomial distribution of the number
of passing samples, it equals the true pass@k 1 - (1 - p)^k. When your answer is wrong, the grader computes what
the usual mistakes would answer and names the one that matches yours.
"""
import itertools, math, re
from fractions import Fraction
import pytest, torch
from adapters import run_extract_answer, run_categorical_choice, run_pass_at_k

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------------
# (a) The GSM8K answer extractor.

CASES = [  # (text, expected, what the case is about)
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
     "72", "a GSM8K gold solution: the calculator annotations are not the answer"),
    ("#### 1,234", "1234", "thousands separators"),
    ("The total is $1,234,567.50\n#### 1,234,567.50", "1234567.50", "commas and a decimal part"),
    ("She owes money.\n#### -7", "-7", "a negative answer"),
    ("#### -1,000", "-1000", "a negative answer with a comma"),
    ("#### 3.75", "3.75", "a decimal answer, kept as written"),
    ("#### 0.5", "0.5", "a decimal below one"),
    ("So the answer is #### 42.", "42", "a full stop after the number ends the sentence, not the number"),
    ("#### 12 dollars", "12", "words after the number"),
    ("First try #### 5, no wait.\n#### 7", "5", "two markers: the FIRST one counts"),
    ("The answer is 42.", None, "no marker: nothing to extract"),
    ("#### forty-two", None, "a marker without a number"),
    ("####42", None, "the marker is four hash marks AND a space"),
    ("####", None, "a bare marker"),
    ("", None, "empty text"),
    ("I think 3 + 4 = 7 and 10 / 2 = 5", None, "numbers but no marker"),
]


def _v_regex(text, pattern=r"#### (\-?[0-9\.\,]+)", last=False, commas=True, stop=True, as_number=False, fallback=False):
    "The reference extractor with switches: each switch turned the wrong way is one usual mistake."
    if not isinstance(text, str): return None
    found = re.findall(pattern, text)
    if not found:
        if fallback:
            nums = re.findall(r"\-?[0-9][0-9\.\,]*", text)
            return nums[-1].replace(",", "").rstrip(".") if nums else None
        return None
    s = found[-1] if last else found[0]
    if commas: s = s.replace(",", "")
    if stop: s = s.rstrip(".")
    if not s: return None
    if as_number:
        try: return float(s) if "." in s else int(s)
        except ValueError: return None
    return s


EXTRACT_MISTAKES = {
    "keeping the commas: '1,234' and '1234' are the same number, and the gold answers are written both ways — "
    "remove the commas": lambda t: _v_regex(t, commas=False),
    "taking the LAST '#### ' marker: the answer is the number after the FIRST one (a model that keeps writing "
    "after its answer must not be able to change it)": lambda t: _v_regex(t, last=True),
    "dropping the minus sign: allow an optional '-' before the digits": lambda t: _v_regex(t, pattern=r"#### ([0-9\.\,]+)"),
    "keeping a full stop that ends the sentence ('#### 42.' is the answer 42)": lambda t: _v_regex(t, stop=False),
    "converting the answer to a number: return the string as written (without commas), the comparison is an exact "
    "string match against the gold answer extracted the same way": lambda t: _v_regex(t, as_number=True),
    "falling back to the last number in the text when there is no '#### ': a completion that never committed to an "
    "answer must score wrong, or a model learns to scatter numbers": lambda t: _v_regex(t, fallback=True),
    "accepting '####' without the space after it": lambda t: _v_regex(t, pattern=r"####\s*(\-?[0-9\.\,]+)"),
}


def diagnose(got, mistakes, arg):
    names = []
    for name, fn in mistakes.items():
        try: w = fn(arg)
        except Exception: continue
        if w == got and type(w) is type(got): names.append(name)
    return names


def _course_extract():
    try:
        from nanochat.tasks import extract_answer
        return extract_answer
    except Exception: return None


@pytest.mark.parametrize("text,want,about", CASES, ids=[c[2][:40] for c in CASES])
def test_extract_answer(text, want, about):
    got = run_extract_answer(text)
    course = _course_extract()
    if course is not None: assert course(text) == want, f"the course's extract_answer disagrees with this case ({about})"
    if got == want and type(got) is type(want): return
    names = diagnose(got, EXTRACT_MISTAKES, text)
    hint = ("Your answer matches " + "; or ".join(names) + ".") if names else \
        "Read the task again: the number right after the first '#### ', commas and trailing full stops removed, as a str."
    pytest.fail(f"{about}: for {text!r} you returned {got!r}, want {want!r}. {hint}")


@pytest.mark.parametrize("junk", [None, 42, b"#### 5", ["#### 5"]])
def test_extract_answer_never_raises(junk):
    "A model's completion can be anything; the scorer must never crash an evaluation loop."
    try: got = run_extract_answer(junk)
    except Exception as e:
        pytest.fail(f"run_extract_answer({junk!r}) raised {type(e).__name__}: {e}. Return None for anything that is not a str.")
    assert got is None, f"run_extract_answer({junk!r}) should be None (not a str), got {got!r}"


def test_extract_answer_scores_like_the_grader():
    """Gold and prediction go through the same extractor, so '#### 1,000' in the gold matches '#### 1000' in the answer.
    (This is the course's reading, which forgives '#### 72.'; the tasks grade with upstream nanochat's reading by
    default, where the full stop stays part of the number: nanochat.tasks.extract_answer(text, rule="reference").)"""
    pairs = [("#### 1,000", "#### 1000", True), ("#### 5", "The answer is 5", False), ("#### -3", "#### 3", False),
             ("#### 72", "I get 72.\n#### 72.", True), ("#### 2.5", "#### 2.50", False)]
    for gold, completion, same in pairs:
        g, p = run_extract_answer(gold), run_extract_answer(completion)
        assert (p is not None and p == g) == same, (
            f"gold {gold!r} -> {g!r}, completion {completion!r} -> {p!r}: these should score "
            f"{'right' if same else 'wrong'} under exact match of the extracted strings")


# ---------------------------------------------------------------------------------------------------------------
# (b) The categorical scorer.

def _batch(seed=0):
    """Logits (B, T, V) of a right-padded batch, built so every usual mistake gives a different answer: at each row's
    last prompt position the best token overall is NOT a letter, the best letter is `gold[b]`, and the positions
    next to it (one before, the first padding position, the batch's last position) prefer other letters."""
    g = torch.Generator().manual_seed(seed)
    B, T, V = 5, 11, 64
    lengths = [6, 3, 9, 4, 9]
    alphabet = [17, 5, 40, 23, 31]                              # token ids of A, B, C, D, E (not sorted: ids are arbitrary)
    letter_ids = [alphabet[:4], alphabet[:3], alphabet[:5], alphabet[:2], alphabet[:4]]
    gold = [2, 1, 4, 0, 3]
    logits = torch.randn(B, T, V, generator=g)
    for b in range(B):
        ids, n = letter_ids[b], lengths[b]
        for t in range(T):
            logits[b, t, ids] = torch.linspace(-1.0, 1.0, len(ids))[torch.randperm(len(ids), generator=g)]
        logits[b, n - 1, 60] = 50.0                            # a non-letter token the model likes best overall
        logits[b, n - 1, ids] = -3.0
        logits[b, n - 1, ids[gold[b]]] = 4.0                   # the right letter: best among the allowed ones
        worst = (gold[b] + 1) % len(ids)
        logits[b, n - 1, ids[worst]] = -9.0                    # the argmin, for the "min instead of max" mistake
        for t, j in ((n - 2, (gold[b] + 2) % len(ids)), (n, (gold[b] + 3) % len(ids)), (T - 1, (gold[b] + 4) % len(ids))):
            if 0 <= t < T and j != gold[b]: logits[b, t, ids[j]] = 8.0
    return logits, lengths, letter_ids, gold


def _pick(logits, lengths, letter_ids, pos, reduce=torch.argmax):
    return [int(reduce(logits[b, pos(b, n), ids])) for b, (n, ids) in enumerate(zip(lengths, letter_ids))]


def categorical_mistakes(logits, lengths, letter_ids):
    T = logits.size(1)
    return {
        "reading each row at its prompt length (the first PADDING position): the prediction for the token after the "
        "prompt sits at position length - 1": lambda: _pick(logits, lengths, letter_ids, lambda b, n: n),
        "reading the batch's last position logits[:, -1]: with right padding that is padding for every shorter row; "
        "read each row at its own last prompt position": lambda: _pick(logits, lengths, letter_ids, lambda b, n: T - 1),
        "reading position length - 2 (one too early)": lambda: _pick(logits, lengths, letter_ids, lambda b, n: n - 2),
        "taking the argmin instead of the argmax": lambda: _pick(logits, lengths, letter_ids, lambda b, n: n - 1, torch.argmin),
        "returning the letter's TOKEN ID instead of its index in letter_ids[b]":
            lambda: [ids[j] for ids, j in zip(letter_ids, _pick(logits, lengths, letter_ids, lambda b, n: n - 1))],
        "taking the argmax over the WHOLE vocabulary: a model that prefers some other token (here id 60) must still "
        "answer with one of the allowed letters — index the logits with letter_ids[b] first, then take the argmax":
            lambda: [int(logits[b, n - 1].argmax()) for b, n in enumerate(lengths)],
    }


def _as_list(got, B):
    if torch.is_tensor(got): got = got.tolist()
    assert isinstance(got, (list, tuple)) and len(got) == B, f"run_categorical_choice must return a list of {B} ints, got {got!r}"
    return [int(x) for x in got]


def test_categorical_choice():
    logits, lengths, letter_ids, gold = _batch()
    try: got = run_categorical_choice(logits.clone(), lengths, letter_ids)
    except (ValueError, IndexError) as e:
        pytest.fail(f"run_categorical_choice raised {type(e).__name__}: {e}. If you took the argmax over the whole "
                    "vocabulary and then looked the winning token up among the letters: the model's favourite token "
                    "here (id 60) is not a letter. Restrict the logits to letter_ids[b] before the argmax.")
    got = _as_list(got, len(gold))
    if got == gold: return
    names = [name for name, fn in categorical_mistakes(logits, lengths, letter_ids).items() if fn() == got]
    hint = ("Your answers match " + "; or ".join(names) + ".") if names else \
        "Per row b: the logits at position prompt_lengths[b] - 1, restricted to letter_ids[b], then the argmax."
    pytest.fail(f"chose {got}, want {gold} (indices into each row's letters). {hint}")


def test_categorical_choice_ignores_other_tokens_and_padding():
    "Changing anything but the letters' logits at the last prompt positions must not change a single answer."
    logits, lengths, letter_ids, gold = _batch(seed=1)
    noisy = logits.clone()
    keep = torch.zeros_like(noisy, dtype=torch.bool)
    for b, (n, ids) in enumerate(zip(lengths, letter_ids)): keep[b, n - 1, ids] = True
    noise = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(7)) * 30
    noisy[~keep] += noise[~keep]
    got = _as_list(run_categorical_choice(noisy, lengths, letter_ids), len(gold))
    assert got == gold, (f"after changing only non-letter logits and other positions the choices became {got}, want "
                         f"{gold}: the answer may depend only on the allowed letters at each row's last prompt position")


def test_categorical_choice_one_row_equals_batch():
    "A row alone (no padding at all) gives the same letter as inside the padded batch."
    logits, lengths, letter_ids, gold = _batch(seed=2)
    for b in range(len(gold)):
        alone = logits[b:b + 1, :lengths[b]].clone()
        got = _as_list(run_categorical_choice(alone, [lengths[b]], [letter_ids[b]]), 1)
        assert got == [gold[b]], f"row {b} alone (T = its prompt length) chose {got[0]}, want {gold[b]}"


# ---------------------------------------------------------------------------------------------------------------
# (c) pass@k, the unbiased estimator.

def exact_pass_at_k(n, c, k):
    "Count it: the fraction of all k-subsets of n samples (the first c of which pass) that contain a pass."
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


def passk_mistakes(n, c, k):
    return {
        "c/n whatever k: that is pass@1, the chance that ONE sample passes": c / n,
        "1 - (1 - c/n)^k: that draws the k samples WITH replacement (the plug-in estimate), which is biased — it "
        "underestimates pass@k because it ignores that the k samples are different samples": 1 - (1 - c / n) ** k,
        "C(n-c, k) / C(n, k) without the '1 -': that is the chance that NONE of the k samples passes":
            math.comb(n - c, k) / math.comb(n, k),
        "min(1, k*c/n): chances of overlapping events do not add up": min(1.0, k * c / n),
    }


def check_value(n, c, k, want, tol=1e-9):
    try: got = run_pass_at_k(n, c, k)
    except (OverflowError, ZeroDivisionError, ValueError) as e:
        pytest.fail(f"run_pass_at_k({n}, {c}, {k}) raised {type(e).__name__}: {e}. math.comb values this large do "
                    "not fit a float: keep them as Python ints until one final division, or write the ratio of "
                    "binomials as a product of n-independent small factors.")
    assert isinstance(got, float), f"run_pass_at_k must return a float, got {type(got).__name__} {got!r}"
    if not math.isfinite(got):
        pytest.fail(f"run_pass_at_k({n}, {c}, {k}) = {got}: converting huge binomial coefficients to float gives "
                    "inf/inf. Keep them as Python ints until one final division, or compute the ratio as a product.")
    if abs(got - float(want)) <= tol: return
    names = [name for name, v in passk_mistakes(n, c, k).items() if abs(v - got) <= 1e-9]
    hint = ("Your value matches " + "; or ".join(names) + ".") if names else \
        "Count: of all the ways to choose k of the n samples, what fraction include at least one passing sample?"
    pytest.fail(f"pass@{k} from n={n}, c={c}: you returned {got:.6f}, want {float(want):.6f}. {hint}")


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_counts_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            check_value(n, c, k, exact_pass_at_k(n, c, k), tol=1e-12)


def test_pass_at_k_hand_values():
    check_value(10, 3, 1, Fraction(3, 10))
    check_value(10, 3, 5, 1 - Fraction(math.comb(7, 5), math.comb(10, 5)))   # 1 - 21/252
    check_value(10, 0, 10, 0)
    check_value(10, 1, 10, 1)
    check_value(10, 8, 3, 1)                                                # fewer than k failures: always a pass


def test_pass_at_k_large_n():
    "n in the hundreds and thousands (RL and the Codex paper use n = 200): no overflow, no precision loss."
    check_value(200, 13, 100, 1 - Fraction(math.comb(187, 100), math.comb(200, 100)), tol=1e-9)
    check_value(2000, 1, 1000, Fraction(1, 2), tol=1e-9)
    check_value(1500, 7, 11, 1 - Fraction(math.comb(1493, 11), math.comb(1500, 11)), tol=1e-9)


@pytest.mark.parametrize("n,k,p", [(10, 3, 0.3), (8, 4, 0.1), (20, 5, 0.05)])
def test_pass_at_k_is_unbiased(n, k, p):
    """What 'unbiased' means: if every sample passes with probability p, c is Binomial(n, p), and the estimator
    averaged over that distribution must equal the true pass@k = 1 - (1 - p)^k."""
    mean = sum(math.comb(n, c) * p ** c * (1 - p) ** (n - c) * run_pass_at_k(n, c, k) for c in range(n + 1))
    truth = 1 - (1 - p) ** k
    if abs(mean - truth) > 1e-9:
        plug = sum(math.comb(n, c) * p ** c * (1 - p) ** (n - c) * (1 - (1 - c / n) ** k) for c in range(n + 1))
        extra = (" That is what 1 - (1 - c/n)^k gives: the plug-in estimate, biased low." if abs(mean - plug) < 1e-9 else "")
        pytest.fail(f"averaged over c ~ Binomial({n}, {p}), your estimator gives {mean:.6f}, but the true pass@{k} is "
                    f"{truth:.6f}: it is biased.{extra}")


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    rule = "it needs 0 <= c <= n and 1 <= k <= n (c passes cannot exceed n samples, and you cannot draw more than n)"
    try: v = run_pass_at_k(n, c, k)
    except ValueError: return
    except Exception as e:
        pytest.fail(f"run_pass_at_k({n}, {c}, {k}) raised {type(e).__name__}: {e}; check the counts first and raise "
                    f"ValueError with a message that says what is wrong: {rule}")
    pytest.fail(f"run_pass_at_k({n}, {c}, {k}) returned {v!r} instead of raising ValueError: {rule}")
