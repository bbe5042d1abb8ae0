"""Start, find and stop the local servers by pid file, so `down` stops only what `up` started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from personify.stack.proc import is_zombie

PROGRESS_EVERY_S = 10.0


class StackError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass(frozen=True, slots=True)
class Managed:
    """A server process owned by the project: its pid file, log file and command-line marker."""

    name: str
    run_dir: Path
    log_dir: Path
    marker: str
    """A string in the process's command line that proves the pid still belongs to it."""

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _cmdline(pid) is not None and self.marker in _cmdline(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """In a session of its own, so it outlives the command that started it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        process = spawn(argv, self.log_file, env, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        return process

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout_s`; False when nothing of ours was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
          start_new_session: bool = False) -> subprocess.Popen:
    """`argv` with stdout and stderr appended to `log` and `env` over this process's own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=start_new_session,
                                env={**os.environ, **(env or {})})


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not _alive(pid):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own exited child so it is not a zombie
    try:
        return not is_zombie(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return False


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a server of a test's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str, log: Path,
               gone: Callable[[], str | None] = lambda: None, poll_s: float = 0.25,
               progress: Callable[[str], object] | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], object] = time.sleep) -> float:
    """Poll `ready` until it holds; returns the seconds waited. Fails at `timeout_s`, or at once
    when `gone()` says why the process is no longer there, either way with the end of its log;
    `progress` hears every `PROGRESS_EVERY_S` that the wait goes on."""
    started = clock()
    said = started
    while not ready():
        now = clock()
        if (why := gone()) is not None:
            raise StackError(f"{what} {why} before it was ready; the end of {log}:\n"
                             f"{log_tail(log)}")
        if now - started >= timeout_s:
            raise StackError(f"{what} did not become ready within {timeout_s:.0f} s; the end of "
                             f"{log}:\n{log_tail(log)}")
        if progress is not None and now - said >= PROGRESS_EVERY_S:
            said = now
            progress(f"  still waiting for {what} ({now - started:.0f} s of {timeout_s:.0f})")
        sleep(poll_s)
    return clock() - started


def exit_status(process: subprocess.Popen) -> str | None:
    """For `wait_until(gone=...)`: None while `process` runs."""
    code = process.poll()
    return None if code is None else f"exited with code {code}"


def stop_process(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log yet at {path})"
