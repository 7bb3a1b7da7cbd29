"""The GPU runs, dry. `speedrun.sh --dry-run` runs every stage of the real script, in order, with the real run's
flags plus toy-size overrides, on the CPU with 2 gloo ranks: a misspelt flag, a stage that cannot find the previous
stage's checkpoint, or a missing report section fails here, not on a rented node (~1.5 minutes on 2 cores).

`run1000.sh` is the same script with the d32 sizing, so its dry run would train, evaluate and report exactly what the
speedrun's does under another tag. Instead of running it all again, its `--plan` (every stage's command parsed by the
parsers that would read it, nothing run) proves that: the same stages in the same order, each ending with the same
flags as the speedrun's dry run but for the d32 tag; and every flag of both real runs (wandb and RL included) parses.
"""
import re, json, os, subprocess, sys, tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("tokenizer", "base_train", "base_loss", "base_eval", "mid_train", "chat_eval_mid", "chat_sft",
          "chat_eval_sft", "chat_rl", "chat_eval_rl", "report")


def run(script, *args, base=None, **env):
    base = base or Path(tempfile.mkdtemp(prefix=f"nanochat_{script.split('.')[0]}_"))
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "OMP_NUM_THREADS": "1", **env}
    r = subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, f"{script} {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return base, r.stdout


def test_dry_run():
    # the budget check runs at the real run's flags before any stage; one cheap stage proves the wiring here (every
    # stage's simulation is checked by tests/test_gpu_budget.py, and the overflow stop by the next test)
    base, out = run("speedrun.sh", "--dry-run", NANOCHAT_BUDGET_STAGES="base_loss")
    # every stage ran, and the stages found each other under the real run's model tag
    done = {p.stem for p in (base / "run_state").glob("*.done")}
    for stage in STAGES:
        assert stage in done, f"stage {stage} did not finish:\n{out[-3000:]}"
    for d in ("base_checkpoints", "mid_checkpoints", "chatsft_checkpoints", "chatrl_checkpoints"):
        assert (base / d / "d20").is_dir(), f"{d}/d20 missing"
    report = (base / "report" / "report.md").read_text()
    for section in ("Base model training", "Midtraining", "Chat SFT", "Chat RL", "Chat evaluation sft"):
        assert f"## {section}" in report, f"report.md has no '{section}' section"
    # the real run's flags were checked against 80 GB per GPU before any stage ran
    assert "overflows" not in out and "speedrun.sh: d20" in out and "base_loss " in out.split("== report_reset")[0], out[:3000]
    # started again, the run skips everything that finished
    _, out = run("speedrun.sh", "--dry-run", base=base, NANOCHAT_SKIP_BUDGET="1")
    assert "base_train: already done" in out and "chat_sft: already done" in out


def test_budget_stops_a_run_that_cannot_fit():
    "d32 at 64 rows per GPU: the script stops before any stage, naming the stage that overflows and by how much."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEPTH": "32", "DEVICE_BATCH_SIZE": "64", "NANOCHAT_BUDGET_STAGES": "base_train"}
    r = subprocess.run(["bash", "scripts/speedrun.sh", "--plan"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, r.stdout[-2000:]
    assert re.search(r"stage base_train overflows 80 GB by [\d.]+ GB", r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]
    assert "report_reset" not in r.stdout, "a stage ran before the budget check"


def plan(script, *args, **env):
    "The stages of `script --plan` with their parsed flags (tools/check_flags.py's --json); the memory budget, which"
    " test_dry_run and test_budget_stops_a_run_that_cannot_fit check, is skipped here."
    out = Path(tempfile.mkdtemp(prefix="nanochat_plan_")) / "plan.json"
    _, stdout = run(script, "--plan", *args, PLAN_JSON=str(out), **{"NANOCHAT_SKIP_BUDGET": "1", **env})
    assert "stages accept their flags" in stdout and "FAIL" not in stdout, stdout
    return json.loads(out.read_text())


def test_run1000_dry_run_is_the_speedrun_dry_run_at_d32():
    speed, r1000 = plan("speedrun.sh", "--dry-run"), plan("run1000.sh", "--dry-run")
    assert [s["stage"] for s in speed] == [s["stage"] for s in r1000], "run1000's stages differ from the speedrun's"
    assert set(STAGES) <= {s["stage"] for s in r1000}
    for a, b in zip(speed, r1000):
        assert a["module"] == b["module"], (a, b)
        # each stage ends with the speedrun dry run's flags, under the d32 tag
        flags = json.loads(json.dumps(b["flags"]).replace('"d32"', '"d20"'))
        assert flags == a["flags"], f"{a['stage']}: run1000's dry run differs from the speedrun's beyond the tag"
    # the run1000 sizing is on the command lines, ahead of the toy overrides
    base_argv = next(s["argv"] for s in r1000 if s["stage"] == "base_train")
    assert base_argv[:2] == ["--depth=32", "--device-batch-size=8"] and "--model-tag=d32" in base_argv, base_argv


@pytest.mark.parametrize("script,depth,batch,shards,chars", [("speedrun.sh", 20, 16, "240", 2000000000),
                                                             ("run1000.sh", 32, 8, "800", 4000000000)])
def test_real_run_flags_parse(script, depth, batch, shards, chars):
    "The real runs' command lines, without the toy overrides, wandb and RL on: every flag parses, the sizing arrives."
    stages = {s["stage"]: s for s in plan(script, WANDB_RUN="t", RUN_RL="1")}
    assert set(STAGES) | {"data_first", "data_rest", "tokenizer_eval", "report_reset"} == set(stages), sorted(stages)
    assert stages["base_train"]["flags"]["depth"] == depth and stages["base_train"]["flags"]["device_batch_size"] == batch
    assert stages["base_train"]["flags"]["wandb"] and stages["chat_sft"]["flags"]["run"] == "t"
    assert stages["tokenizer"]["flags"]["max_chars"] == chars and stages["data_rest"]["argv"] == ["-n", shards]
    for name in ("base_loss", "base_eval", "mid_train", "chat_sft", "chat_rl"):
        assert f"d{depth}" in json.dumps(stages[name]["flags"]), f"{name} does not read the d{depth} tag"


def test_plan_catches_a_bad_flag(tmp_path):
    "The check the plans rely on fails on a misspelt flag and a wrong value, naming the stage and argparse's reason."
    plan = tmp_path / "plan"
    plan.write_text("good\tpython -m scripts.base_loss --model-tag=d20\n"
                    "typo\ttorchrun --standalone --nproc_per_node=2 -m scripts.base_loss -- --model-tagg=d20\n"
                    "value\tpython -m scripts.tok_train --vocab-size=lots\n")
    r = subprocess.run([sys.executable, "tools/check_flags.py", str(plan)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok    good"), r.stdout
    assert lines[1].startswith("FAIL  typo") and "unrecognized arguments: --model-tagg=d20" in lines[1], r.stdout
    assert lines[2].startswith("FAIL  value") and "invalid int value: 'lots'" in lines[2], r.stdout
    assert "1 of 3 stages accept their flags; 2 do not" in r.stdout


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
