"""The GPU memory budget (bench/bench_gpu_budget.py): its accounting against the real CPU allocator at tiny scale, the
flags it reads from the scripts, and its verdict on flags that cannot fit.

    python -m pytest tests/test_gpu_budget.py -q                                 # default tier (~30 s on 1 core)
    NANOCHAT_TEST_FLAGS=slow python -m pytest tests/test_gpu_budget.py -q        # + the full d20 and d32 tables (minutes)
"""
import functools, os, re
import pytest
import torch

import nanochat.gpt as gpt
from bench import bench_gpu_budget as bud

SLOW = "slow" in os.environ.get("NANOCHAT_TEST_FLAGS", "")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measured_step(chunk_elems=None, **cfg):
    "(simulated, real) peak bytes above the step's start of one training step at tiny scale, and the real run's Peak."
    saved = gpt.softcap_cross_entropy
    if chunk_elems: gpt.softcap_cross_entropy = functools.partial(saved, chunk_elems=chunk_elems)
    try:
        sim = bud.simulate_train("tiny", **cfg)
        box = {}
        class Around:   # the profiler watches the real allocator during the measured step only
            def __enter__(self): self.c = bud.CPUAllocatorPeak(); self.c.__enter__()
            def __exit__(self, *e): self.c.__exit__(*e); box["peak"] = self.c.peak
        real = bud.simulate_train("tiny", fake=False, around_step=Around, **cfg)
    finally:
        gpt.softcap_cross_entropy = saved
    return sim.peak - sim.start, box["peak"], sim, real


@pytest.mark.parametrize("chunk_elems", [None, 2**14], ids=["direct-loss", "chunked-loss"])
def test_accounting_matches_the_cpu_allocator(chunk_elems):
    # the same step (2 micro-steps, grad norm, AdamW + Muon), fake tensors vs real ones under the CPU allocator
    sim, allocator, s, r = _measured_step(chunk_elems, depth=2, B=8, T=128, world=1, grad_accum=2, vocab=512)
    print(f"tiny step, loss {'chunked' if chunk_elems else 'direct'}: simulated {sim:,} B, CPU allocator {allocator:,} B "
          f"(ratio {sim / allocator:.4f}); activations {s.activations:,} B simulated, {r.activations:,} B real")
    assert abs(sim / allocator - 1) < 0.15
    assert s.activations == r.activations and s.optim_state == r.optim_state


def test_flags_come_from_the_scripts():
    d20, d32 = bud.script_flags("speedrun"), bud.script_flags("run1000")
    assert (d20["DEPTH"], d20["DEVICE_BATCH_SIZE"]) == (20, 16) and (d32["DEPTH"], d32["DEVICE_BATCH_SIZE"]) == (32, 8)
    assert "--device-batch-size=8" in d32["BASE"] and "--depth=32" in d32["BASE"]
    text = open(os.path.join(REPO, "scripts", "run1000.sh")).read()
    assert re.search(r"DEPTH=32 DEVICE_BATCH_SIZE=8 ", text)
    s = bud.stage_settings(d32)
    assert (s["depth"], s["T"], s["vocab"], s["base"]["B"], s["base"]["accum"]) == (32, 2048, 65536, 8, 4)
    assert s["sft"]["B"] == 4 and s["rl"]["B"] == 8 and s["web"]["users"] == 32
    over = bud.stage_settings(bud.script_flags("run1000", depth=26, device_batch_size=16))
    assert (over["depth"], over["base"]["B"], over["mid"]["B"], over["loss"]["B"]) == (26, 16, 16, 16)


def test_bad_input_is_refused_clearly(capsys):
    with pytest.raises(SystemExit): bud.main(["--depth", "0"])
    with pytest.raises(SystemExit): bud.main(["--depth", "21"])   # 1344 wide cannot split into 11 even heads
    assert "depth 21" in capsys.readouterr().err
    assert bud.main(["--script", "speedrun", "--stages", "base_trian"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_d32_device_batch_64_overflows(capsys):
    rc = bud.main(["--script", "run1000", "--device-batch-size", "64", "--stages", "base_train", "--check"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 1
    m = re.search(r"stage base_train overflows 80 GB by ([\d.]+) GB at flags --depth=32 --device-batch-size=64", out)
    assert m and float(m.group(1)) > 50, out
    assert re.search(r"--device-batch-size=\d+ would fit", out)


@pytest.mark.skipif(not SLOW, reason="slow: NANOCHAT_TEST_FLAGS=slow runs it (full d20 and d32 tables, minutes)")
@pytest.mark.parametrize("script", ["speedrun", "run1000"])
def test_every_stage_fits_with_headroom(script, capsys):
    rc = bud.main(["--script", script, "--check"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0, out


def test_gpu_check_prints_prediction_beside_measurement(tmp_path):
    # CPU side of scripts/gpu_check.sh: its syntax, the prediction command, and the summary that puts both side by side
    import subprocess, sys
    script = os.path.join(REPO, "scripts", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    text = open(script).read()
    assert "predict train_d20 --depth 20 --batch-size 16" in text and "--batch-size 16" in text.split("check train_d20")[1]
    pred = subprocess.run([sys.executable, "-m", "bench.bench_gpu_budget", "--bench-train", "--world", "1", "--depth", "2",
                           "--batch-size", "2", "--max-seq-len", "64", "--vocab", "512"], capture_output=True, text=True, cwd=REPO)
    assert pred.returncode == 0 and "GB allocated compiled" in pred.stdout, pred.stderr
    (tmp_path / "logs").mkdir()
    (tmp_path / "results.tsv").write_text("train_d20\t0\t60\tpython -m bench.bench_train\n")
    (tmp_path / "logs" / "predict_train_d20.log").write_text(pred.stdout)
    (tmp_path / "logs" / "train_d20.log").write_text(   # the row bench_train prints (figures made up for the parser)
        "depth params dtype mode step ms tok/s TFLOP/s MFU vs first warm-up s mem GiB\n"
        "    2    1,000  bfloat16  compile  10.0  12,800  0.1  1.0%  1.00x  5.0  0.1\n")
    summary = text.split("\"$PY\" - \"$RESULTS\" \"$OUT\" <<'EOF'\n")[1].split("\nEOF\n")[0]
    r = subprocess.run([sys.executable, "-c", summary, str(tmp_path / "results.tsv"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"budget: predicted [\d.]+ GB / measured 0\.107 GB .*predicted [\d,]+ tok/s / measured 12,800 tok/s", r.stdout), r.stdout
