"""Run an exercise notebook (one of `lessons/LNN_*/exercises/`, or your copy of it) the way the tests run notebooks,
and say which exercise failed first, with its hint.

    .venv/bin/python tools/check_exercise.py lessons/L02_transformer/exercises/mine_03_gpt.ipynb
    NANOCHAT_TEST_FLAGS=slow .venv/bin/python tools/check_exercise.py ...   # also the cells tagged slow

Cells tagged slow/gpu/multigpu/net/notest (the nbdev test flags of the course notebook, kept as cell tags) are
skipped unless NANOCHAT_TEST_FLAGS names them. Exit status 0 when every cell ran, 1 at the first failure.
"""
import ast, os, sys, time
from pathlib import Path

FLAGS = ("slow", "gpu", "multigpu", "net", "notest")

def check(path):
    from execnb.shell import CaptureShell
    from fastcore.nbio import read_nb
    from fastcore.xtras import working_directory
    path = Path(path).resolve()
    if not path.exists(): raise SystemExit(f"error: {path} not found")
    nb, force = read_nb(path), os.environ.get("NANOCHAT_TEST_FLAGS", "").split()
    skip = lambda c: c.cell_type != "code" or any(t in FLAGS and t not in force for t in c.metadata.get("tags", []))
    os.environ["IN_TEST"] = "1"                     # what nbdev's runner sets: widgets render statically
    cur, shell = [None], CaptureShell(path)
    with working_directory(path.parent):            # as in Jupyter: the notebook's folder is the working directory
        try:
            t0 = time.time(); shell.run_all(nb, exc_stop=True, preproc=lambda c: cur.__setitem__(0, c) or skip(c))
            ran = sum(1 for c in nb.cells if not skip(c))
            print(f"{path.name}: ok, {ran} code cells ran in {time.time() - t0:.1f}s (flagged cells skipped: "
                  f"{sum(1 for c in nb.cells if c.cell_type == 'code') - ran})")
            return 0
        except BaseException as e: err = e
    i = nb.cells.index(cur[0])
    print(f"{path.name}: cell {i} failed: {type(err).__name__}: {str(err)[:500]}\n---\n{cur[0].source[:800]}\n---")
    ex = next((c for c in reversed(nb.cells[:i + 1]) if "exercise" in c.metadata.get("tags", [])), None)
    if ex is not None:
        try: tree = ast.parse(ex.source)
        except SyntaxError: tree = ast.Module([], [])
        names = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        print(f"the exercise above it: {', '.join(names) or '(cell does not parse)'} — hint: {ex.metadata.get('exercise', '')}")
    return 1

if __name__ == "__main__":
    if len(sys.argv) != 2: raise SystemExit(__doc__)
    sys.exit(check(sys.argv[1]))
