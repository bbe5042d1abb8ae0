"""`personify worker` as a process of ours: spawned with the settings in its environment, awaited
until /ready answers, asked over HTTP, measured from /proc, stopped. One harness for the local
stack and the demo (a daemon behind a pid file), and for the tests and the benchmark (a child)."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from personify.stack.proc import Usage, usage_of
from personify.stack.processes import (
    Managed,
    StackError,
    exit_status,
    log_tail,
    port_open,
    spawn,
    stop_process,
    wait_until,
)
from streams.topology import Settings

WORKER_COMMAND = ("-m", "personify.cli", "worker")
"""After the interpreter: the worker runs on the same Python and code as what starts it."""


def http_get(settings: Settings, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body) from the worker's HTTP server, with the API token when one is set;
    (0, b"") when nothing answers."""
    token = settings.api_token
    request = urllib.request.Request(
        f"http://{settings.web_host}:{settings.web_port}{path}",
        headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def samples(exposition: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def totals_by_name(exposition: str) -> dict[str, float]:
    """Every sample summed over its labels, by sample name."""
    totals: dict[str, float] = {}
    for name, _, value in samples(exposition):
        totals[name] = totals.get(name, 0.0) + value
    return totals


def total(exposition: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(value for sample, present, value in samples(exposition)
               if sample == name and labels.items() <= present.items())


class WorkerProcess:
    """One worker, started and stopped as often as wanted; as a daemon (`managed` given) it runs
    in a session of its own behind a pid file, so it outlives the command that started it."""

    def __init__(self, settings: Settings, log: Path, *, managed: Managed | None = None,
                 loglevel: str | None = "warning", poll_s: float = 0.3,
                 start_timeout_s: float = 90.0, options: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.options = options
        """More options of `personify worker` (e.g. `--no-fast-restore`)."""
        self.log = log
        self.managed = managed
        self.loglevel = loglevel
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def argv(self) -> list[str]:
        level = ["--loglevel", self.loglevel] if self.loglevel else []
        return [sys.executable, *WORKER_COMMAND, *level, *self.options]

    def start(self, timeout_s: float | None = None,
              progress: Callable[[str], object] | None = None) -> float:
        """Spawn the worker and wait for /ready; returns the seconds from spawn to ready."""
        self.spawn()
        return self.wait_ready(timeout_s or self.start_timeout_s, progress)

    def spawn(self) -> None:
        """Start the process without waiting (several workers then start side by side)."""
        env = self.settings.to_env()
        if self.managed is not None:
            self.process = self.managed.start(self.argv(), env)
        else:
            self.process = spawn(self.argv(), self.log, env)

    def wait_ready(self, timeout_s: float, progress: Callable[[str], object] | None = None
                   ) -> float:
        """Seconds until /ready answers 200; fails at once, with the log's tail, if it exits."""
        return wait_until(lambda: self.get("/ready")[0] == 200, timeout_s=timeout_s,
                          what=f"the worker on {self.url}", log=self.log, gone=self._gone,
                          poll_s=self.poll_s, progress=progress)

    def _gone(self) -> str | None:
        if self.process is not None:
            return exit_status(self.process)
        if self.managed is not None and self.managed.pid() is None:
            return "is no longer running"
        return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
        return http_get(self.settings, path, timeout_s)

    def exposition(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise StackError(f"{self.url}/metrics answered {status or 'nothing'}:\n"
                             f"{self.log_tail()}")
        return body.decode()

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics summed over its labels, by sample name."""
        return totals_by_name(self.exposition())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return total(self.exposition(), name, **labels)

    def usage(self) -> Usage:
        return usage_of(self.pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last commit; the next start must cope."""
        assert self.process is not None, "worker not started"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait for a clean shutdown; SIGKILL after `timeout_s`."""
        if self.process is not None:
            stop_process(self.process, timeout_s)
        if self.managed is not None:
            self.managed.stop(timeout_s)

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log, lines)


def stack_worker(settings: Settings) -> WorkerProcess:
    """The local stack's worker: a daemon logging at the default level under the cache dir."""
    root = settings.cache_dir
    managed = Managed("worker", root / "run", root / "logs", marker=" ".join(WORKER_COMMAND[1:]))
    return WorkerProcess(settings, managed.log_file, managed=managed, loglevel=None, poll_s=0.25)


def start_stack_worker(settings: Settings, progress: Callable[[str], object] = print) -> str:
    """The stack's worker, started unless it runs; returns once /ready answers."""
    worker = stack_worker(settings)
    if worker.managed.pid() is not None:
        worker.wait_ready(60, progress)
        return "already running"
    if port_open(settings.web_host, settings.web_port):
        raise StackError(f"port {settings.web_port} is taken by another process; choose another "
                         "with PERSONIFY_WEB_PORT.")
    worker.start(120, progress)
    return "started"
