"""`personify worker` as a child process, with the kernel's own accounting of what it costs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.topology import Settings

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class WorkerFailed(RuntimeError):
    """The worker exited or did not become ready; the message ends with its log."""


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) the process has used so far, and its peak resident memory."""

    cpu_s: float
    peak_rss_bytes: int


def usage_of(pid: int) -> Usage:
    """From /proc: `stat` fields utime and stime (clock ticks), `status` VmHWM (kB).

    The command name in `stat` may hold spaces and parentheses, so fields are counted after
    its closing parenthesis (utime and stime are fields 14 and 15 of the line)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    peak_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    return Usage((utime + stime) / _CLOCK_TICKS, peak_kb * 1024)


WORKER_COMMAND = ("-m", "personify.cli", "worker", "--loglevel", "warning")


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path,
                 command: tuple[str, ...] = WORKER_COMMAND) -> None:
        self.settings = settings
        self.log = log
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def start(self, timeout_s: float = 300.0) -> float:
        """Spawn the worker and wait for /ready; returns the seconds from spawn to ready."""
        env = {**os.environ, **self.settings.to_env()}
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.command],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise WorkerFailed(f"worker exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.get("/ready")[0] == 200:
                return time.monotonic() - started
            time.sleep(0.05)
        raise WorkerFailed(f"worker not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://{self.settings.web_host}:{self.settings.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics summed over its labels, by sample name."""
        status, body = self.get("/metrics")
        if status != 200:
            raise WorkerFailed(f"/metrics answered {status}")
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def usage(self) -> Usage:
        return usage_of(self.pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last commit; the next start must cope."""
        self._signal_and_wait(signal.SIGKILL, 30)

    def stop(self) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL after a minute)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self._signal_and_wait(signal.SIGTERM, 60)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal_and_wait(self, signum: int, timeout_s: float) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(timeout=timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
