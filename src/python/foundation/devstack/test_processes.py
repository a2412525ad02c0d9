from __future__ import annotations

import os
import signal
import sys
import time

import psutil

from foundation.devstack.processes import ManagedProcess, stop_all

# A parent that forks a child into its process group and ignores SIGTERM: stopping must
# still leave neither behind.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code])
print("child", child.pid, flush=True)
time.sleep(60)
"""


def collect() -> tuple[list[tuple[str, str]], object]:
    lines: list[tuple[str, str]] = []
    return lines, lambda tag, text: lines.append((tag, text))


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_output_lines_reach_the_sink_with_the_tag() -> None:
    lines, sink = collect()
    process = ManagedProcess("svc", [sys.executable, "-c", "print('one'); print('two')"], os.environ, sink)  # type: ignore[arg-type]
    process.start()
    wait_until(lambda: not process.running())
    process.finish()
    assert lines == [("svc", "one"), ("svc", "two")]
    assert process.exit_code() == 0


def test_each_process_leads_its_own_group() -> None:
    _, sink = collect()
    process = ManagedProcess("svc", [sys.executable, "-c", "import time; time.sleep(30)"], os.environ, sink)  # type: ignore[arg-type]
    process.start()
    try:
        assert process.pid is not None
        assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    finally:
        process.stop()
    assert not process.running()
    assert process.expected_exit


def test_stop_kills_a_group_that_ignores_sigterm_after_the_timeout() -> None:
    lines, sink = collect()
    process = ManagedProcess("svc", [sys.executable, "-c", STUBBORN], os.environ, sink)  # type: ignore[arg-type]
    process.start()
    wait_until(lambda: bool(lines))
    child = psutil.Process(int(lines[0][1].split()[1]))
    started = time.monotonic()
    stop_all([process], timeout=0.5)
    assert time.monotonic() - started < 5
    assert process.exit_code() == -signal.SIGKILL
    wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)


def test_children_get_sigterm_when_their_parent_dies() -> None:
    # The runner stand-in starts a managed child and is then killed with SIGKILL.
    code = (
        "import os, sys, time\n"
        "from foundation.devstack.processes import ManagedProcess\n"
        "p = ManagedProcess('c', [sys.executable, '-c', 'import time; time.sleep(60)'], os.environ,"
        " lambda t, l: None)\n"
        "p.start(); print(p.pid, flush=True); time.sleep(60)\n"
    )
    lines, sink = collect()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runner = ManagedProcess("runner", [sys.executable, "-c", code], env, sink)  # type: ignore[arg-type]
    runner.start()
    wait_until(lambda: bool(lines))
    child = psutil.Process(int(lines[0][1]))
    assert runner.pid is not None
    os.kill(runner.pid, signal.SIGKILL)
    wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)
    runner.finish()
