"""The GPU runs, dry: `speedrun.sh --dry-run` and `run1000.sh --dry-run` run every stage of the real scripts, in
order, with the real runs' flags plus toy-size overrides, on the CPU with 2 gloo ranks. A misspelt flag, a stage
that cannot find the previous stage's checkpoint, or a missing report section fails here, not on a rented node.
About 1.5 minutes each on 2 cores."""
import os, subprocess, tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(script, tag):
    base = Path(tempfile.mkdtemp(prefix=f"nanochat_{tag}_"))
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", f"scripts/{script}", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, f"{script} --dry-run failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return base, r.stdout


@pytest.mark.parametrize("script,depth", [("speedrun.sh", 20), ("run1000.sh", 32)])
def test_dry_run(script, depth):
    base, out = dry_run(script, script.split(".")[0])
    # every stage ran, and the stages found each other under the real run's model tag
    done = {p.stem for p in (base / "run_state").glob("*.done")}
    for stage in ("tokenizer", "base_train", "base_loss", "base_eval", "mid_train", "chat_eval_mid", "chat_sft",
                  "chat_eval_sft", "chat_rl", "chat_eval_rl", "report"):
        assert stage in done, f"stage {stage} did not finish:\n{out[-3000:]}"
    for d in ("base_checkpoints", "mid_checkpoints", "chatsft_checkpoints", "chatrl_checkpoints"):
        assert (base / d / f"d{depth}").is_dir(), f"{d}/d{depth} missing"
    report = (base / "report" / "report.md").read_text()
    for section in ("Base model training", "Midtraining", "Chat SFT", "Chat RL", "Chat evaluation sft"):
        assert f"## {section}" in report, f"report.md has no '{section}' section"
    # started again, the run skips everything that finished
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", f"scripts/{script}", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "base_train: already done" in r.stdout and "chat_sft: already done" in r.stdout


def test_need_free_gb():
    "The disk check that setup.sh and speedrun.sh run before long work: a one-line reason, and an override."
    def check(gb, **env):
        sh = f'source scripts/common.sh; need_free_gb {gb} "{tempfile.mkdtemp()}" "this test"; echo went-on'
        base = {k: v for k, v in os.environ.items() if k != "NANOCHAT_SKIP_DISK_CHECK"}
        return subprocess.run(["bash", "-c", sh], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60)
    r = check(1000000)
    assert r.returncode == 1 and "went-on" not in r.stdout, r.stdout + r.stderr
    assert "this test needs about 1000000 GB free" in r.stderr and "NANOCHAT_SKIP_DISK_CHECK=1" in r.stderr, r.stderr
    r = check(1000000, NANOCHAT_SKIP_DISK_CHECK="1")
    assert r.returncode == 0 and "went-on" in r.stdout, r.stdout + r.stderr
    r = check(0)
    assert r.returncode == 0 and "went-on" in r.stdout, r.stdout + r.stderr
