from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from personify.stack.worker_process import stack_worker
from streams.topology import Settings
from tests.integration.conftest import isolated_settings

pytestmark = pytest.mark.integration

SECTIONS = ("WHO ARE MY BEST CUSTOMERS?", "WHERE DID THEY COME FROM?", "Attributed revenue",
            "SPEND AND RETURN", "Channel × segment", "MRR", "CHECKED AGAINST THE SIMULATOR'S TRUTH",
            "CONSISTENCY OF THE OUTPUTS")


def personify(settings: Settings, *argv: str, timeout_s: float) -> subprocess.CompletedProcess:
    """The command line in a child process; the worker it starts comes from the same venv."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "personify.cli", *argv],
                          env={**os.environ, **settings.to_env(), "PATH": path},
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def demo_settings(base_settings: Settings, tmp_path: Path):
    settings = replace(isolated_settings(base_settings, tmp_path), cache_dir=tmp_path / "cache")
    yield settings
    personify(settings, "stack", "down", "--only", "worker", timeout_s=60)
    assert stack_worker(settings).managed.pid() is None


def test_demo_prints_the_answer_and_writes_the_html_report(demo_settings, tmp_path):
    report = tmp_path / "report.html"
    result = personify(demo_settings, "demo", "--people", "1500", "--report", str(report),
                       "--no-progress", timeout_s=120)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for section in SECTIONS:
        assert section in out
    assert "The top 20 % of customers" in out and "Power segment:" in out
    assert "0 missing, 0 unexpected" in out
    assert "FAIL" not in out
    assert "stop:         .venv/bin/personify stack down" in out
    assert "total " in out.splitlines()[-1]
    page = report.read_text()
    assert "<svg" in page and "<script" not in page
    # the demo leaves the worker running
    assert stack_worker(demo_settings).managed.pid() is not None
    assert (demo_settings.cache_dir / "demo").is_dir()
