"""Capstone stage 6 — midtraining: conversations packed into rows, an exact resume, the LR by data progress.

    pytest lessons/capstone/test_capstone_mid.py -q                        # your implementation (adapters.py)
    CAPSTONE_IMPL=course pytest lessons/capstone/test_capstone_mid.py   # the course's own implementation

The oracles are written out in this file, independently of nanochat: for the loader, the slot's token stream in
plain Python (batch k is the window of B*T+1 tokens at k*B*T; its progress is the position of the conversation that
holds the window's last token); for the schedule, the rule of lesson L06 as formulas. When your numbers disagree,
the grader rebuilds the usual mistakes and names the one your numbers match. The last tests (course mode only)
inject each named mistake into the graders and check that the grader names it.
"""
import json, os
import pytest, torch
from adapters import run_mid_loader, run_mid_schedule, COURSE
from grading import named_matches

torch.set_num_threads(1)
BOS = 0


# ---------------------------------------------------------------------------------------------------------------
# The conversations: ids start with BOS (0, nowhere else), tokens 1..49; the mask says what SFT would train.

def make_convs(n=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        L = int(torch.randint(3, 16, (1,), generator=g))
        ids = [BOS] + torch.randint(1, 50, (L - 1,), generator=g).tolist()
        cut = int(torch.randint(1, L, (1,), generator=g))             # the "user" part, then the "assistant" part
        out.append((ids, [0] * cut + [1] * (L - cut)))
    return out


def slot_stream(convs, slot, n_slots, n_tokens, stride=None):
    """The slot's stream: (ids, mask, owner) with owner[p] = i = slot + j*stride of the conversation holding token p,
    at least n_tokens long (conversations slot, slot+stride, ... cycled modulo len(convs))."""
    stride = n_slots if stride is None else stride
    ids, mask, owner, j = [], [], [], 0
    while len(ids) < n_tokens:
        i = slot + j * stride
        c_ids, c_mask = convs[i % len(convs)]
        ids += c_ids; mask += c_mask; owner += [i] * len(c_ids); j += 1
    return ids, mask, owner


def window(stream, pos, B, T):
    w = torch.tensor(stream[pos:pos + B * T + 1])
    return w[:-1].view(B, T), w[1:].view(B, T)


def oracle(convs, B, T, n, slot=0, n_slots=1, start=0):
    "Batches start .. start+n-1 of the slot: (inputs, targets, progress), batch k at stream position k*B*T."
    ids, _, owner = slot_stream(convs, slot, n_slots, (start + n + 1) * B * T + 1)
    out = []
    for k in range(start, start + n):
        x, y = window(ids, k * B * T, B, T)
        out.append((x, y, (owner[k * B * T + B * T] + 1) / len(convs)))
    return out


def take(gen, n, what="your loader"):
    out = []
    for _ in range(n):
        try: out.append(next(gen))
        except StopIteration:
            raise AssertionError(f"{what} stopped after {len(out)} batches: it must go round the conversations again (the "
                                 "next epoch) instead of ending; the run decides when to stop, from the progress") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# The loader's batches and progress

def batch_mistakes(convs, B, T, n, slot, n_slots):
    "name -> the first n input batches that mistake gives."
    N = len(convs)
    ids, _, _ = slot_stream(convs, slot, n_slots, (n + 2) * B * (T + 1) + 1)
    ids1, _, _ = slot_stream(convs, slot, n_slots, (n + 2) * B * T + 1, stride=1)

    def per_row():
        out = []
        for k in range(n):
            base = k * B * (T + 1)
            out.append(torch.stack([torch.tensor(ids[base + r * (T + 1):base + r * (T + 1) + T]) for r in range(B)]))
        return out
    return {
        "B*T+1 tokens used per batch: the window's last token is only a target, it is the next batch's first input, so "
        "a batch uses B*T tokens (otherwise one token per batch is never an input)":
            lambda: [window(ids, k * (B * T + 1), B, T)[0] for k in range(n)],
        "each row cut as its own window of T+1 tokens: a row's last target must be the next row's first input (one "
        "window of B*T+1 tokens per batch, B*T of them used)": per_row,
        f"slot {slot} reading conversations {slot}, {slot + 1}, {slot + 2}, ...: slot s of n reads s, s+n, s+2n, ... "
        "(so that n ranks x micro-steps read each conversation once)":
            lambda: [window(ids1, k * B * T, B, T)[0] for k in range(n)],
    }


def progress_mistakes(convs, B, T, n, slot, n_slots):
    "name -> the first n progress values that mistake gives."
    N = len(convs)
    _, _, owner = slot_stream(convs, slot, n_slots, (n + 2) * B * T + 1)
    last, first = [owner[k * B * T + B * T] for k in range(n)], [owner[k * B * T] for k in range(n)]
    return {
        "the conversation of the batch's FIRST token: progress is that of the last conversation read, the one holding "
        "the batch's last target": [(i + 1) / N for i in first],
        "the conversation of the batch's last INPUT: the last conversation read holds the last TARGET (token B*T+1 of "
        "the window)": [(owner[k * B * T + B * T - 1] + 1) / N for k in range(n)],
        "progress without the +1 (i / N): after the slot's last conversation of the epoch it must be >= 1":
            [i / N for i in last],
        "the index reduced modulo len(convs): progress then never passes 1 in the next epoch, and a run that waits for "
        "the end of the data could go on for ever": [((i % N) + 1) / N for i in last],
        "progress counted in the slot's own conversations ((j + 1) * n_slots / N): use the conversation's position in "
        "the whole data, i = slot + j*n_slots": [((i - slot) // n_slots + 1) * n_slots / N for i in last],
    }


def check_batches(loader, convs, B, T, slot=0, n_slots=1, n=12):
    got = take(loader(convs, B, T, slot, n_slots), n)
    want = oracle(convs, B, T, n, slot, n_slots)
    where = f"(B={B}, T={T}, slot {slot} of {n_slots}, {len(convs)} conversations)"
    for k, ((x, y, state, p), (wx, wy, wp)) in enumerate(zip(got, want)):
        assert torch.is_tensor(x) and tuple(x.shape) == (B, T) and tuple(y.shape) == (B, T), (
            f"batch {k} {where}: inputs and targets must be (B, T) tensors, got {getattr(x, 'shape', type(x))}")
        assert x.dtype == torch.int64 and y.dtype == torch.int64, f"batch {k}: use int64 token ids, got {x.dtype}"
        if (y < 0).any(): raise AssertionError(
            f"batch {k} {where}: your targets hold -1 (the SFT mask applied). Midtraining trains on every token, the "
            "user's included: the mask is for SFT (lesson L07), not here")
        if not torch.equal(x, wx) or not torch.equal(y, wy):
            xs = [g[0] for g in got]
            found = named_matches(xs, batch_mistakes(convs, B, T, n, slot, n_slots),
                                  lambda a, b: all(torch.equal(u, v) for u, v in zip(a, b)))
            if not found and all((g[:, 0] == BOS).all() for g in xs[:4]): found = [
                "every row starting a conversation (one conversation per row, padded or cut): midtraining packs the "
                "stream, a row starts and ends anywhere and a conversation continues in the next row"]
            assert found or not torch.equal(x, wx), (
                f"batch {k} {where}: inputs right, targets wrong: the target of every position is the next token of "
                "the stream, across rows and batches")
            raise AssertionError(f"batch {k} {where} differs from the slot's stream. " + (
                f"Your batches match {found[0]}." if found else
                "The stream is the ids of conversations slot, slot+n_slots, ... one after the other (round again after "
                "the last); batch k is its tokens k*B*T .. k*B*T + B*T (inputs the first B*T, targets the last B*T)."))
        if abs(p - wp) > 1e-12:
            found = named_matches([g[3] for g in got], progress_mistakes(convs, B, T, n, slot, n_slots),
                                  lambda a, b: all(abs(u - v) < 1e-12 for u, v in zip(a, b)))
            raise AssertionError(f"batch {k} {where}: progress {p}, want {wp}. " + (
                f"Yours matches {found[0]}." if found else
                "Progress is (i + 1) / len(convs) for i = slot + j*n_slots of the conversation holding the batch's last "
                "target (not reduced modulo len(convs))."))


@pytest.mark.parametrize("B,T,slot,n_slots", [(2, 8, 0, 1), (3, 5, 0, 1), (1, 64, 0, 1), (2, 8, 1, 2), (2, 4, 2, 3)])
def test_batches_and_progress(B, T, slot, n_slots):
    check_batches(run_mid_loader, make_convs(), B, T, slot, n_slots)


def test_state_is_a_small_position():
    convs = make_convs()
    for *_, state, _ in take(run_mid_loader(convs, 2, 8), 200): pass
    try: text = json.dumps(state)
    except TypeError as e:
        raise AssertionError(f"the state must be JSON-serialisable (a checkpoint's meta file stores it): {e}") from None
    assert len(text) < 500, (f"after 200 batches your state is {len(text)} characters of JSON: it should be a position in "
                             "the slot's stream (which conversation, how many of its tokens are used), a few integers")


# ---------------------------------------------------------------------------------------------------------------
# The exact resume

def check_resume(loader, convs, B, T, slot=0, n_slots=1):
    "Resume from the state of batch k: the next batches are k+1, k+2, ... of the uninterrupted run."
    run = take(loader(convs, B, T, slot, n_slots), 40)
    ids, _, owner = slot_stream(convs, slot, n_slots, 60 * B * T)
    starts = [p for p in range(len(ids)) if p == 0 or owner[p] != owner[p - 1]]
    epoch = sum(len(convs[i][0]) for i in range(slot, len(convs), n_slots))   # the slot's share of one epoch
    where = f"(B={B}, T={T}, slot {slot} of {n_slots})"
    for k in range(30):
        state = json.loads(json.dumps(run[k][2]))   # as stored in a checkpoint and read back
        resumed = take(loader(convs, B, T, slot, n_slots, state), 3, "your resumed loader")
        for i, (x, y, _, p) in enumerate(resumed):
            wx, wy, _, wp = run[k + 1 + i]
            if torch.equal(x, wx) and torch.equal(y, wy) and abs(p - wp) < 1e-12: continue
            if torch.equal(x, wx) and torch.equal(y, wy):
                raise AssertionError(f"resumed from the state of batch {k} {where}: the batches are right but the "
                                     f"progress is {p}, want {wp}: the state must also say where the slot is in the data")
            pos = (k + 1) * B * T                                     # where the next batch starts in the stream
            here = max(s for s in starts if s <= pos)
            nxt = min(s for s in starts if s > pos)
            cands = {
                "a state that points AT the batch just yielded, not after it: the resumed run trains on that batch "
                "twice": window(ids, k * B * T, B, T)[0],
                "a state that skips a batch": window(ids, (k + 2) * B * T, B, T)[0],
                "a resume that restarts the current conversation from its first token: those tokens are trained twice "
                "(remember how many of its tokens were used)": window(ids, here, B, T)[0],
                "a resume that skips the rest of the current conversation (it continues with the next one): remember "
                "how many of its tokens were used": window(ids, nxt, B, T)[0],
            }
            found = [c for c in named_matches(x, {n: v for n, v in cands.items() if not torch.equal(v, run[k + 1][0])},
                                              torch.equal)] if i == 0 else []
            raise AssertionError(
                f"resumed from the state of batch {k} {where}; the slot's share of an epoch is {epoch} tokens: resumed batch {i} "
                f"differs from batch {k + 1 + i} of the uninterrupted run. " + (
                    f"Your loader matches {found[0]}." if found else
                    "A new loader given the state must continue the stream exactly where the old one stopped."))


@pytest.mark.parametrize("B,T,slot,n_slots", [(2, 8, 0, 1), (3, 5, 1, 2), (1, 3, 0, 1)])
def test_resume_is_exact(B, T, slot, n_slots):
    check_resume(run_mid_loader, make_convs(), B, T, slot, n_slots)


# ---------------------------------------------------------------------------------------------------------------
# The LR schedule driven by progress

def oracle_lrm(p, warmdown_ratio, final_lr_frac):
    if warmdown_ratio <= 0 or p < 1 - warmdown_ratio: return 1.0
    frac = max(0.0, (1 - p) / warmdown_ratio)
    return frac + (1 - frac) * final_lr_frac


def oracle_schedule(progress, n, wd, final, start=0):
    out = []
    for step in range(start, 10_000):
        p = progress[step] if n <= 0 else (step + 1) / n
        out.append(oracle_lrm(p, wd, final))
        if (p >= 1) if n <= 0 else step + 1 >= n: return out


def feed(progress, start, limit):
    "The data progress of steps start, start+1, ...; a run that takes far too many steps is stopped with a message."
    i = 0
    for i, p in enumerate(progress[start:start + limit], 1): yield p
    raise AssertionError(f"your run did not stop after {i} steps: with num_iterations <= 0 it must stop after the step whose "
                         "progress reaches 1 (with num_iterations > 0, after step num_iterations - 1)")


def schedule_mistakes(progress, n, wd, final, start):
    "name -> the multipliers that mistake gives."
    def sched(lrm=oracle_lrm, prog=None, stop=None):
        out = []
        for step in range(start, 200):
            p = prog(step) if prog else (progress[step] if n <= 0 else (step + 1) / n)
            out.append(lrm(p, wd, final))
            if (stop or (lambda s, p: p >= 1 if n <= 0 else s + 1 >= n))(step, p): return out
        return out
    return {
        "the LR of the previous step's progress (one step late): set the LR from this step's progress, before the "
        "optimizers step": lambda: [1.0] + sched()[:-1],
        "a run that stops one step late (progress > 1 instead of >= 1): the step that reaches the end of the data is the "
        "last": lambda: sched(stop=lambda s, p: p > 1) if n <= 0 else None,
        "a run that stops one step early: the step that reaches the end of the data still runs (its LR is the end of the "
        "warm-down)": lambda: sched()[:-1],
        "a warm-down that starts at progress warmdown_ratio: it covers the LAST warmdown_ratio of the data, from "
        "progress 1 - warmdown_ratio": lambda: sched(lrm=lambda p, w, f: 1.0 if w <= 0 or p < w else
                                                     max(0.0, (1 - p) / w) + (1 - max(0.0, (1 - p) / w)) * f),
        "final_lr_frac left out: the warm-down ends at final_lr_frac, not 0":
            lambda: sched(lrm=lambda p, w, f: oracle_lrm(p, w, 0.0)),
        "progress above 1 not clamped: once a slot wrapped round the LR stays at final_lr_frac (yours went below)":
            lambda: sched(lrm=lambda p, w, f: 1.0 if w <= 0 or p < 1 - w else (1 - p) / w + (1 - (1 - p) / w) * f),
        "the data progress used although num_iterations fixes the run: with num_iterations > 0 the steps count, "
        "progress = (step + 1) / num_iterations": lambda: sched(prog=lambda s: progress[s]) if n > 0 else None,
        "step / num_iterations: progress after step i is (i + 1) / num_iterations, so the last step ends the warm-down":
            lambda: sched(prog=lambda s: s / n) if n > 0 else None,
        "the step count restarted at the resume: step start_step is step start_step of the run, not step 0":
            lambda: sched(prog=lambda s: (s - start + 1) / n, stop=lambda s, p: s - start + 1 >= n) if n > 0 and start else None,
    }


# data progress per step: uneven (conversations have different lengths); A hits 1.0 exactly, B jumps past it
PROGRESS_A = [0.07, 0.15, 0.26, 0.34, 0.41, 0.5, 0.62, 0.71, 0.78, 0.83, 0.88, 0.9, 0.95, 0.97, 1.0, 1.06, 1.1, 1.2]
PROGRESS_B = [0.1, 0.25, 0.4, 0.52, 0.66, 0.79, 0.86, 0.93, 0.99, 1.08, 1.15, 1.24, 1.3]
SCHEDULES = [  # (progress, num_iterations, warmdown_ratio, final_lr_frac, start_step)
    (PROGRESS_A, -1, 0.2, 0.0, 0), (PROGRESS_B, -1, 0.3, 0.1, 0), (PROGRESS_B, -1, 0.0, 0.0, 0),
    (PROGRESS_A, 10, 0.2, 0.0, 0), (PROGRESS_B, 12, 0.5, 0.05, 0), (PROGRESS_A, 10, 0.4, 0.0, 6), (PROGRESS_A, -1, 0.5, 0.0, 9)]


def check_schedule(schedule, progress, n, wd, final, start):
    want = oracle_schedule(progress, n, wd, final, start)
    got = schedule(feed(progress, start, 3 * len(progress)), n, wd, final, start)
    got = list(got) if got is not None else []
    where = (f"num_iterations={n}, warmdown_ratio={wd}, final_lr_frac={final}, start_step={start}; data progress per step "
             f"{progress[start:]}")
    if len(got) == len(want) and all(abs(a - b) < 1e-9 for a, b in zip(got, want)): return
    found = named_matches(got, schedule_mistakes(progress, n, wd, final, start),
                          lambda a, b: b is not None and len(a) == len(b) and all(abs(u - v) < 1e-9 for u, v in zip(a, b)))
    raise AssertionError(f"{where}: your multipliers {[round(x, 4) for x in got]}, want {[round(x, 4) for x in want]}. " + (
        "They match " + "; or ".join(found) + "." if found else
        "Per step: the progress (the data's, or (step + 1) / num_iterations), then 1 until 1 - warmdown_ratio, linear to "
        "final_lr_frac at 1, final_lr_frac beyond; the run ends on the step whose progress reaches 1."))


@pytest.mark.parametrize("progress,n,wd,final,start", SCHEDULES)
def test_schedule(progress, n, wd, final, start):
    check_schedule(run_mid_schedule, progress, n, wd, final, start)


# ---------------------------------------------------------------------------------------------------------------
# The graders, checked: each named mistake injected into a correct implementation must be named (reference only).

def mistaken_loader(mistake):
    "A plain-Python packed loader (state = (j, offset)) with one of the usual mistakes built in."
    def loader(convs, B, T, slot=0, n_slots=1, resume_state=None):
        N, stride = len(convs), (1 if mistake == "slot" else n_slots)
        j, off = resume_state or (0, 0)
        if mistake == "restart": off = 0
        if mistake == "skip_rest" and off: j, off = j + 1, 0
        buf, owners = [], []
        def fill(n):
            nonlocal buf
            while len(buf) < n:
                i = slot + (j + len(owners)) * stride
                ids, mask = convs[i % N]
                owners.append((i, len(ids)))
                buf += [(t, m) for t, m in zip(ids, mask)]
        fill(off)
        del buf[:off]
        used_in_first = off
        while True:
            fill(B * T + 1)
            w = torch.tensor([t for t, _ in buf[:B * T + 1]])
            y = w[1:].clone()
            if mistake == "masked": y[torch.tensor([m for _, m in buf[1:B * T + 1]]) == 0] = -1
            x = w[:-1]
            # the conversation holding the last target
            p, acc, last_i = B * T + used_in_first, 0, None
            for i, L in owners:
                acc += L
                if acc > p: last_i = i; break
            progress = (last_i + 1) / N
            if mistake == "no_plus_one": progress = last_i / N
            use = B * T + (1 if mistake == "plus_one" else 0)
            del buf[:use]
            used_in_first += use
            state_before = (j, used_in_first - use)
            while owners and used_in_first >= owners[0][1]:
                used_in_first -= owners[0][1]; owners.pop(0); j += 1
            state = (j, used_in_first)
            yield x.view(B, T), y.view(B, T), list(state_before if mistake == "replay" else state), progress
    return loader


def mistaken_schedule(mistake):
    def schedule(data_progress, n=-1, wd=0.2, final=0.0, start=0):
        out, prev = [], None
        for step, p in enumerate(data_progress, start):
            if n > 0: p = {"data_with_n": p, "step_over_n": step / n, "restart": (step - start + 1) / n}.get(mistake, (step + 1) / n)
            # (with num_iterations > 0 every variant still stops by the step count)
            lrm = oracle_lrm(p, wd, 0.0 if mistake == "no_final" else final)
            if mistake == "unclamped" and wd > 0 and p >= 1 - wd: lrm = (1 - p) / wd + (1 - (1 - p) / wd) * final
            out.append(lrm if mistake != "lag" else (1.0 if prev is None else prev)); prev = lrm
            if n > 0:
                if (step - start if mistake == "restart" else step) + 1 >= n: return out
            elif (p > 1 if mistake == "late_stop" else p >= 1): return out
        return out
    return schedule


LOADER_MISTAKES = {"plus_one": "B*T+1 tokens used per batch", "slot": "reading conversations", "masked": "SFT mask",
                   "no_plus_one": "without the +1", "replay": "points AT the batch just yielded",
                   "restart": "restarts the current conversation", "skip_rest": "skips the rest of the current conversation"}
SCHEDULE_MISTAKES = {"lag": "previous step's progress", "late_stop": "stops one step late", "no_final": "final_lr_frac left out",
                     "unclamped": "not clamped", "data_with_n": "data progress used although num_iterations",
                     "step_over_n": "step / num_iterations", "restart": "restarted at the resume"}


@pytest.mark.skipif(not COURSE, reason="the graders' own check: CAPSTONE_IMPL=course")
def test_the_mistake_free_injections_pass():
    "The plain-Python loader and schedule above, without a mistake, pass every check (so the injections below are fair)."
    convs = make_convs()
    check_batches(mistaken_loader(None), convs, 2, 8, 1, 2); check_resume(mistaken_loader(None), convs, 2, 8, 1, 2)
    for args in SCHEDULES: check_schedule(mistaken_schedule(None), *args)


@pytest.mark.skipif(not COURSE, reason="the graders' own check: CAPSTONE_IMPL=course")
@pytest.mark.parametrize("mistake", sorted(LOADER_MISTAKES))
def test_loader_grader_names(mistake):
    convs, loader = make_convs(), mistaken_loader(mistake)
    with pytest.raises(AssertionError) as e:
        check_batches(loader, convs, 2, 8, 1, 2); check_resume(loader, convs, 2, 8, 1, 2); check_resume(loader, convs, 3, 5)
    assert LOADER_MISTAKES[mistake] in str(e.value), f"{mistake}: the grader said: {e.value}"


@pytest.mark.skipif(not COURSE, reason="the graders' own check: CAPSTONE_IMPL=course")
@pytest.mark.parametrize("mistake", sorted(SCHEDULE_MISTAKES))
def test_schedule_grader_names(mistake):
    msgs = []
    for args in SCHEDULES:
        try: check_schedule(mistaken_schedule(mistake), *args)
        except AssertionError as e: msgs.append(str(e))
    assert msgs, f"{mistake}: no schedule check failed"
    assert any(SCHEDULE_MISTAKES[mistake] in m for m in msgs), f"{mistake}: the grader said:\n" + "\n".join(msgs)
