#!/usr/bin/env bash
# The whole test suite (what CI runs): set up, check the generated package is in sync with the notebooks and the
# notebooks are clean, run the Rust crate's tests, then every notebook's default tier and the Python tests.
# Extra tiers: NANOCHAT_TEST_FLAGS="slow" bash scripts/test.sh   (flags: slow gpu multigpu net)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh   # Debian's chromium for the UI tests (installs it with apt-get when run as root)
export PATH="$PWD/.venv/bin:$PATH"
# tests must never touch the user's real cache: give them a private base dir
export NANOCHAT_BASE_DIR="${NANOCHAT_TEST_BASE_DIR:-$(mktemp -d)}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== notebooks -> package in sync, notebooks clean"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  before=$(git status --porcelain -- nanochat nbs)
  nbdev-export
  nbdev-clean
  after=$(git status --porcelain -- nanochat nbs)
  if [ "$before" != "$after" ]; then
    echo "FAIL: nbdev-export/nbdev-clean changed files; edit the notebooks, run both, and commit:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
  fi
else
  echo "(not a git checkout: sync check skipped)"
fi

echo "== uv.lock in sync with pyproject.toml"
# offline and instant when the lock is current; fails when a dependency changed without `uv lock` (uv is in the
# test extra, so it is in .venv whichever way setup installed)
if ! .venv/bin/uv lock --check --offline -q; then
  echo "FAIL: uv.lock is stale: run \`uv lock\` (or .venv/bin/uv lock) and commit uv.lock" >&2
  exit 1
fi

echo "== cargo test (rustbpe)"
cargo test -q --manifest-path rustbpe/Cargo.toml

echo "== pytest: Python tests, capstone graders (course mode), every notebook's default tier"
# two workers, one test file each at a time (--dist loadfile keeps a file's module fixtures in one process); every
# worker gets its own base directory (conftest.py). NANOCHAT_TEST_WORKERS=0 runs everything in this one process.
CAPSTONE_IMPL=course python -m pytest tests lessons nbs -q -p no:cacheprovider --durations=12 \
  -n "${NANOCHAT_TEST_WORKERS:-2}" --dist loadfile
