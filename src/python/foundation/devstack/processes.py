"""Child processes that never outlive the stack.

Each child leads its own process group (Granian forks workers into it), so stopping kills
the whole group; and each gets a parent-death signal, so even a runner killed with SIGKILL
takes its children along. Output is pumped line by line into the shared log sink.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1

LineSink = Callable[[str, str], None]


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class ManagedProcess:
    def __init__(
        self, tag: str, argv: Sequence[str], env: Mapping[str, str], sink: LineSink, cwd: Path | None = None
    ) -> None:
        self.tag = tag
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.sink = sink
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.expected_exit = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Call from the main thread: the parent-death signal fires when the forking thread ends."""
        self.expected_exit = False
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )
        self._pump = threading.Thread(target=self._copy_output, args=(self.proc,), daemon=True)
        self._pump.start()

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self.sink(self.tag, raw.decode("utf-8", "replace").rstrip("\r\n"))
        proc.stdout.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def finish(self, timeout: float = 2.0) -> None:
        """After the leader is gone: no stray member of its group, output drained."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        if self._pump is not None:
            self._pump.join(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        stop_all([self], timeout)


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 5.0) -> None:
    """SIGTERM every group at once, SIGKILL what is left after ``timeout`` seconds."""
    group = [p for p in processes if p.proc is not None]
    for process in group:
        process.expected_exit = True
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in group:
        assert process.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(max(0.0, deadline - time.monotonic()))
    for process in group:
        process.finish()
