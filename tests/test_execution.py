"""The sandbox under load: many threads at once, no leaked descriptors or processes, limits validated.

The lessons (statuses, the red-team table, HumanEval 164/164) are in nbs/05a_execution.ipynb; these are the
plumbing checks that do not teach anything but must hold for evaluation loops that run for hours.
"""
import os
from concurrent.futures import ThreadPoolExecutor
import pytest
from nanochat.execution import execute_code, ExecutionResult


def open_fds():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


def test_threads_no_leaks():
    "24 programs from 6 threads: every result is right for its own program, and no descriptor is left open."
    before = open_fds()
    codes = [f"print({i} * {i})" if i % 3 else f"assert {i} == -1" for i in range(24)]
    with ThreadPoolExecutor(6) as ex: results = list(ex.map(execute_code, codes))
    for i, r in enumerate(results):
        assert isinstance(r, ExecutionResult)
        if i % 3: assert (r.status, r.stdout) == ("pass", f"{i * i}\n"), (i, r)
        else: assert r.status == "fail" and "AssertionError" in r.stderr, (i, r)
    if before is not None: assert open_fds() == before, "execute_code leaked file descriptors"


def test_timeout_is_prompt():
    "A 0.5 s timeout ends the call in well under the 5 s a missing kill would cost (generous: shared machine)."
    import time
    t0 = time.monotonic()
    r = execute_code("import time\nwhile True: time.sleep(0.01)", timeout=0.5)
    assert r.status == "timeout" and r.timeout and time.monotonic() - t0 < 4.5


@pytest.mark.parametrize("kw", [dict(timeout=-1), dict(timeout="5"), dict(timeout=float("nan")),
                                dict(maximum_memory_bytes=2**20), dict(maximum_memory_bytes=1.5e9)])
def test_bad_limits_raise(kw):
    with pytest.raises(ValueError): execute_code("print(1)", **kw)


def test_no_memory_limit():
    "maximum_memory_bytes=None runs without an address-space limit (for trusted code that maps a lot)."
    assert execute_code("x = bytearray(300 * 2**20); print(len(x))", maximum_memory_bytes=None).stdout == f"{300 * 2**20}\n"
