# Shared by the shell runs (runcpu.sh, speedrun.sh, run1000.sh): sourced, not run.
#
# `stage NAME CMD...` runs one stage of a run and records it as done in $NANOCHAT_BASE_DIR/run_state/NAME.done,
# so a run that was interrupted and started again skips what already finished (a stage that died half-way is not
# marked, so it runs again; the training stages then continue from their last complete checkpoint with --resume).
# Every stage's wall time goes to run_state/timings.tsv, and the run's table of stage timings is printed at the end.
# With NANOCHAT_PLAN=FILE (speedrun.sh --plan) a stage only appends its name and command to FILE, for
# tools/check_flags.py to check.

stage() {
  local name=$1; shift
  if [ -n "${NANOCHAT_PLAN:-}" ]; then   # --plan: write the command down (NAME<TAB>quoted words), run nothing
    printf '%s\t%s\n' "$name" "$(printf '%q ' "$@")" >> "$NANOCHAT_PLAN"
    return 0
  fi
  local done_file="$NANOCHAT_BASE_DIR/run_state/$name.done"
  mkdir -p "$NANOCHAT_BASE_DIR/run_state"
  if [ -f "$done_file" ] && [ -z "${NANOCHAT_RERUN:-}" ]; then
    echo "== $name: already done ($(cat "$done_file")); NANOCHAT_RERUN=1 runs every stage again"
    return 0
  fi
  echo "== $name: $*"
  local t0=$SECONDS
  "$@"
  local dt=$((SECONDS - t0))
  printf '%s\t%s\n' "$name" "$dt" >> "$NANOCHAT_BASE_DIR/run_state/timings.tsv"
  echo "finished in ${dt}s at $(date -u +%H:%M:%S)" > "$done_file"
}

# `resume_flag DIR`: prints --resume when DIR already holds a complete checkpoint step (model + meta), so a training
# stage that was interrupted continues from there instead of starting over.
resume_flag() {
  if compgen -G "$1/meta_*.json" > /dev/null; then echo "--resume"; fi
}

# `need_free_gb GB DIR WHAT`: stop before any long work when the disk holding DIR has less than GB free for WHAT.
# NANOCHAT_SKIP_DISK_CHECK=1 goes on anyway.
need_free_gb() {
  mkdir -p "$2"
  local free_gb
  free_gb=$(df -Pk "$2" | awk 'NR==2 {print int($4 / 1048576)}')
  if [ -z "${NANOCHAT_SKIP_DISK_CHECK:-}" ] && [ -n "$free_gb" ] && [ "$free_gb" -lt "$1" ]; then
    echo "error: $3 needs about $1 GB free on the disk holding $2; only $free_gb GB is free" >&2
    echo "       (free some space, or set NANOCHAT_SKIP_DISK_CHECK=1 to try anyway)" >&2
    exit 1
  fi
}

# `print_timings`: the stage timing table of this run (seconds per stage, in order).
print_timings() {
  local f="$NANOCHAT_BASE_DIR/run_state/timings.tsv"
  [ -f "$f" ] || return 0
  echo "== stage timings (s)"
  column -t -s $'\t' "$f" 2>/dev/null || cat "$f"
}
