"""The merge guards of the single cached forward: the server's batched step and the engine must give what the code
before the merge gave (loaded from git history), bit for bit on the logits and token for token on greedy output."""
import subprocess, pathlib
import pytest, torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = "a639103"   # the last commit with serve.decode_step (its own copy of the forward)

def _have(commit):
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0

needs_base = pytest.mark.skipif(not _have(BASE), reason=f"git history without {BASE}")


def tiny(seed=0, n_kv_head=1):
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    cfg = GPTConfig(sequence_len=256, vocab_size=512, n_layer=2, n_head=2, n_kv_head=n_kv_head, n_embd=64)
    with torch.device("meta"): m = GPT(cfg)
    m.to_empty(device="cpu"); m.init_weights()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2: p.normal_(0, p.size(1) ** -0.5)
    return m.eval()


def _prefill(model, cache, slot, prompt):
    from nanochat.engine import KVCache
    c = model.config
    pc = KVCache(1, c.n_kv_head, len(prompt), c.head_dim, c.n_layer)
    model(torch.tensor([prompt]), kv_cache=pc)
    cache.load(slot, pc)


@needs_base
@pytest.mark.parametrize("n_kv_head", [1, 2])
@torch.inference_mode()
def test_server_step_equals_old_decode_step(n_kv_head):
    "Several steps of rows at different positions: logits and cache contents identical to the old decode_step."
    from bench.bench_engine import package_at
    from nanochat.serve import SlotCache
    old, why = package_at(BASE, ("attention", "gpt", "engine", "serve"))
    assert old is not None, why
    model = tiny(n_kv_head=n_kv_head)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (5, 17, 9)]
    new_c, old_c = SlotCache(model.config, 4, 64), SlotCache(model.config, 4, 64)
    for i, p in enumerate(prompts): _prefill(model, new_c, i, p); _prefill(model, old_c, i, p)
    lengths = [len(p) for p in prompts]
    ids = [1, 2, 3]
    for step in range(6):
        ref = old.serve.decode_step(model, old_c, torch.tensor(ids), torch.tensor(lengths))
        new_c.set_rows(lengths)
        got = model(torch.tensor(ids)[:, None], kv_cache=new_c)[:, -1]
        assert torch.equal(got, ref), f"step {step}: max diff {(got - ref).abs().max()}"
        assert torch.equal(new_c.kv, old_c.kv)
        ids = got.argmax(-1).tolist()
        lengths = [n + 1 for n in lengths]


@needs_base
@pytest.mark.parametrize("temperature", [0.0])
def test_engine_tokens_equal_old_code(temperature):
    "The engine on the old model+engine code and on today's: the same greedy tokens, batch 1 and 4 (sampling changed its draw)."
    from bench.bench_engine import package_at, old_model, NoSpecialTokens
    from nanochat.engine import Engine
    old, why = package_at(BASE)
    assert old is not None, why
    model = tiny(1, n_kv_head=2)
    new_e, old_e = Engine(model, NoSpecialTokens(512)), old.engine.Engine(old_model(old, model), NoSpecialTokens(512))
    prompt = list(range(3, 19))
    for B in (1, 4):
        a = list(old_e.generate(prompt, num_samples=B, max_tokens=40, temperature=temperature, seed=5))
        b = list(new_e.generate(prompt, num_samples=B, max_tokens=40, temperature=temperature, seed=5))
        assert a == b


@pytest.mark.parametrize("kw", [dict(temperature=1.0, top_k=50), dict(temperature=0.8, top_k=None, top_p=0.9), dict(temperature=0.0)])
def test_seeded_request_same_through_engine_and_server(kw):
    "One sampler, one seeding rule (choice i of a request draws from a generator seeded seed + i): the same tokens."
    from nanochat.tokenizer import Tokenizer
    from nanochat.engine import Engine
    from nanochat.serve import Scheduler, GenRequest
    tok = Tokenizer.from_ranks({bytes([b]): b for b in range(256)})
    model = tiny(3, n_kv_head=2)
    prompt = tok.render_conversation({"messages": [{"role": "user", "content": "Once upon a time"}]})[0] + [tok.encode_special("<|assistant_start|>")]
    eng, sched = Engine(model, tok), Scheduler(model, tok, max_batch=4)
    try:
        others = sched.submit(GenRequest(prompt[:9] + prompt[-1:], n=1, max_tokens=30, temperature=1.0, seed=1))   # another user in the batch
        req = sched.submit(GenRequest(prompt, n=3, max_tokens=30, seed=11, **kw))
        for r in (others, req):
            while True:
                ev = r.queue.get(timeout=60)
                assert not any("error" in e for e in ev), ev
                if any("end" in e for e in ev): break
    finally: sched.close()
    seqs, _ = eng.generate_batch(prompt, num_samples=3, max_tokens=30, seed=11, **kw)
    for i in range(3):
        assert seqs[i][len(prompt):] == [t for t in req.tokens[i] if t not in eng.stop_tokens], i
