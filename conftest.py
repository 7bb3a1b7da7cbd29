"""Run every notebook in nbs/ as a pytest item, so `pytest` reports "N passed" for the notebooks too.

Each notebook runs in its own subprocess through nbdev's `test_nb` (the same runner as `nbdev-test`), so a
notebook that starts torch.distributed or spawns threads cannot leak into the next one. Cells carrying a flag
from `tst_flags` (slow, gpu, multigpu, net, notest) are skipped unless named in NANOCHAT_TEST_FLAGS, e.g.
`NANOCHAT_TEST_FLAGS="slow" pytest nbs/05_pretrain.ipynb`.

The generated exercise notebooks (`lessons/*/exercises/`) are not collected: they fail until a learner writes the
code. `tests/test_exercises.py` checks them instead: in sync with nbs/, and with the answers filled in the same cells
as the nbs/ notebook that runs here (one answer run in the default tier, all of them with NANOCHAT_TEST_FLAGS=slow).
"""
import os, subprocess, sys, textwrap
import pytest

_RUNNER = textwrap.dedent("""
    import sys
    from nbdev.test import test_nb
    from nbdev.config import get_config
    fn, force = sys.argv[1], sys.argv[2].split()
    skip = [f for f in get_config().tst_flags.split() if f not in force]
    ok, secs = test_nb(fn, skip_flags=skip, force_flags=force)
    print(f"{fn}: {'ok' if ok else 'FAILED'} in {secs:.1f}s")
    sys.exit(0 if ok else 1)
""")

def pytest_configure(config):
    # under pytest-xdist (`-n 2`, what scripts/test.sh runs) each worker gets its own base directory, so two tests
    # running at once never write the same checkpoint or tokenizer
    worker, base = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("NANOCHAT_BASE_DIR")
    if worker and base:
        os.environ["NANOCHAT_BASE_DIR"] = os.path.join(base, worker)
        os.makedirs(os.environ["NANOCHAT_BASE_DIR"], exist_ok=True)

def pytest_collect_file(parent, file_path):
    if (file_path.suffix == ".ipynb" and not file_path.name.startswith("_") and ".ipynb_checkpoints" not in str(file_path)
            and file_path.parent.name != "exercises"):
        return NotebookFile.from_parent(parent, path=file_path)

class NotebookFile(pytest.File):
    def collect(self): yield NotebookItem.from_parent(self, name=self.path.stem)

class NotebookItem(pytest.Item):
    def runtest(self):
        flags = os.environ.get("NANOCHAT_TEST_FLAGS", "")
        r = subprocess.run([sys.executable, "-c", _RUNNER, str(self.path), flags], cwd=self.path.parent,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0: raise NotebookFailure(r.stdout[-4000:] + "\n" + r.stderr[-8000:])

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailure): return f"notebook {self.path.name} failed:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self): return self.path, 0, f"notebook: {self.path.name}"

class NotebookFailure(Exception): pass
