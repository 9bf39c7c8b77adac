"""Local processes the dev cluster owns: started with their log in the data directory, found
again by pid from the state file, and stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ManagedProcess", "tail"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when its parent dies (Linux only).

    Test runs use it so that a killed pytest never leaves an API server behind; detached dev
    clusters do not, since they must outlive the command that started them.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, called after
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc (None if there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@dataclass
class ManagedProcess:
    """One process: its name, pid, command line and log file."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        detach: bool,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` with stdout and stderr appended to ``log_path``.

        ``detach=True``: a new session, so the process outlives this Python process and a
        terminal's hang-up. ``detach=False``: it dies with this process (on Linux).
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=None if detach else _die_with_parent(),
            )
        return cls(name=name, pid=popen.pid, argv=tuple(argv), log_path=log_path, popen=popen)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "argv": list(self.argv), "log": str(self.log_path)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManagedProcess:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            argv=tuple(str(arg) for arg in data["argv"]),
            log_path=Path(data["log"]),
        )

    def is_running(self) -> bool:
        """True while this very process runs (a reused pid with another command line is not it)."""
        if self.popen is not None:
            return self.popen.poll() is None
        state = _proc_state(self.pid)
        if state is None or state in ("Z", "X"):
            return False
        return _cmdline(self.pid)[: len(self.argv)] == list(self.argv)

    def exit_code(self) -> int | None:
        """The exit status if we started it and it has ended."""
        return self.popen.poll() if self.popen is not None else None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # Started in its own session, so its group holds any children it forked too.
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                return True
            time.sleep(0.05)
        return not self.is_running()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns once it is gone."""
        if self.is_running():
            self._signal(signal.SIGTERM)
            if not self._wait(timeout):
                self._signal(signal.SIGKILL)
                if not self._wait(10.0):
                    raise RuntimeError(f"{self.name} (pid {self.pid}) survived SIGKILL")
        if self.popen is not None:
            self.popen.wait()
