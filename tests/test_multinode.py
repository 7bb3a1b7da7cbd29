"""Two "nodes" on one machine: the README's multi-node torchrun line, on localhost with gloo, must train exactly
what one process with gradient accumulation trains.

Each node is its own `torchrun --nnodes=2 --node-rank=R --nproc-per-node=1 --master-addr=127.0.0.1` launcher (as on
two real machines), so this exercises the static rendezvous and cross-node ranks, not just `--standalone`.
"""
import json, os, socket, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--depth=2", "--max-seq-len=64", "--device-batch-size=4", "--total-batch-size=512", "--eval-tokens=2048",
        "--sample-every=-1", "--device-type=cpu", "--log-every=10", "--num-iterations=4", "--eval-every=2"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_dir():
    base = Path(tempfile.mkdtemp(prefix="nanochat_multinode_"))
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "NANOCHAT_DATA": "embedded", "OMP_NUM_THREADS": "1"}
    # a small corpus: the pydoc help topics (~0.7M characters, read in no time) as the embedded source's shards, not
    # the whole embedded corpus (parsing the stdlib for it costs ~5 s of CPU; 00b_dataset tests that build)
    code = ("from nanochat.dataset import pydoc_topics, write_shard, shard_name, get_data_dir, VAL_SHARD\n"
            "from nanochat.tok_train import train_tokenizer\n"
            "docs, d = pydoc_topics(), get_data_dir('embedded')\nd.mkdir(parents=True, exist_ok=True)\n"
            "write_shard(docs[8:], d / shard_name(0), row_group_size=16)\n"
            "write_shard(docs[:8], d / shard_name(VAL_SHARD), row_group_size=16)\n"
            "train_tokenizer(vocab_size=512, max_chars=400_000, data_dir=d)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    return base, env


def _losses(base, tag):
    return [r["loss"] for r in map(json.loads, open(base / "base_checkpoints" / tag / "train_log.jsonl")) if "loss" in r]


def test_two_nodes_equal_one_process(base_dir):
    base, env = base_dir
    port = _free_port()
    launch = lambda rank: subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}", "--nproc-per-node=1",
         "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "scripts.base_train", "--", *TINY,
         "--model-tag=two_nodes"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nodes = [launch(0), launch(1)]
    deadline = time.time() + 600
    outs = []
    for p in nodes:
        try: outs.append(p.communicate(timeout=max(1, deadline - time.time()))[0])
        except subprocess.TimeoutExpired:
            for q in nodes: q.kill()
            pytest.fail("the two-node run did not finish in 10 minutes")
    for rank, (p, out) in enumerate(zip(nodes, outs)):
        assert p.returncode == 0, f"node {rank} failed:\n{out[-3000:]}"
    one = subprocess.run([sys.executable, "-m", "scripts.base_train", *TINY, "--model-tag=one_process"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two_losses, one_losses = _losses(base, "two_nodes"), _losses(base, "one_process")
    assert len(two_losses) == len(one_losses) == 4
    assert max(abs(a - b) for a, b in zip(two_losses, one_losses)) < 1e-4, (two_losses, one_losses)
    meta = json.load(open(base / "base_checkpoints" / "two_nodes" / "meta_000004.json"))
    assert meta["world_size"] == 2
