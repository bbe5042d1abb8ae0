"""`personify collect` in a child process, as an operator runs it, and plain HTTP to it."""

from __future__ import annotations

import http.client
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from personify.stack.processes import (
    StackError,
    exit_status,
    free_port,
    log_tail,
    spawn,
    stop_process,
    wait_until,
)
from streams.topology import Settings


class CollectorProcess:
    def __init__(self, settings: Settings, config_toml: str, workdir: Path) -> None:
        config_file = workdir / f"collector-{free_port()}.toml"
        config_file.write_text(config_toml)
        self.settings = replace(settings, collector_port=free_port(),
                                collector_config_file=str(config_file))
        self.log_path = config_file.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.settings.collector_port

    def start(self, timeout_s: float = 30) -> CollectorProcess:
        process = self.process = spawn([sys.executable, "-m", "personify.cli", "collect"],
                                       self.log_path, self.settings.to_env())
        try:
            wait_until(self._answers, timeout_s=timeout_s, what=f"the collector on {self.port}",
                       log=self.log_path, gone=lambda: exit_status(process), poll_s=0.2)
        except StackError as exc:
            pytest.fail(str(exc), pytrace=False)
        return self

    def _answers(self) -> bool:
        try:
            return self.request("GET", "/health")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                timeout_s: float = 15) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON answer or None)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            answer = orjson.loads(data) if response.getheader("Content-Type", "").startswith(
                "application/json") else data
            return response.status, dict(response.getheaders()), answer
        finally:
            connection.close()

    def post(self, path: str, document: Any, **headers: str) -> tuple[int, dict[str, str], Any]:
        body = document if isinstance(document, bytes) else orjson.dumps(document)
        return self.request("POST", path, body, headers)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s=15)
