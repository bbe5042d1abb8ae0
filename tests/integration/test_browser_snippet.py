"""The browser snippet in real headless Chromium: page views from a page on loopback, read back
from the real page-views topic."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from personify.stack.browser import HEADLESS_FLAGS, ensure_chromium
from streams.topology import Settings
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import consume, values

pytestmark = pytest.mark.integration

FIRST_PAGE = """<!doctype html><html><head><title>first</title>
<script src="http://127.0.0.1:{collector}/personify.js" data-write-key="web-key"></script>
</head><body><p>first</p>
<script>setTimeout(function () {{ location.href = "/second.html?utm_source=snippet"; }}, 700);
</script></body></html>"""
SECOND_PAGE = """<!doctype html><html><head><title>second</title>
<script src="http://127.0.0.1:{collector}/personify.js" data-write-key="web-key"></script>
</head><body><p>second</p></body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A website on loopback, serving the files of a directory."""
    root = tmp_path / "site"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator:
    browser = ensure_chromium()
    launched: list[subprocess.Popen] = []

    def open_page(url: str, log: Path) -> subprocess.Popen:
        profile = tmp_path / f"chromium-profile-{len(launched)}"  # fresh: no cookie yet
        process = subprocess.Popen(
            [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", url],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        launched.append(process)
        return process

    yield open_page
    for process in launched:  # the browser and the helpers it started, in its own group
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_snippet_sends_page_views_with_one_anonymous_id_across_pages(
        settings: Settings, tmp_path: Path, site, chromium):
    root, site_port = site
    origin = f"http://127.0.0.1:{site_port}"
    collector = CollectorProcess(settings, f"""
allowed_origins = ["{origin}"]
[sources.web]
write_key = "web-key"
sends = ["page_view", "signup"]
""", tmp_path).start()
    try:
        (root / "first.html").write_text(FIRST_PAGE.format(collector=collector.port))
        (root / "second.html").write_text(SECOND_PAGE.format(collector=collector.port))
        first_url = f"{origin}/first.html?run={uuid.uuid4().hex[:6]}"
        chromium(first_url, tmp_path / "chromium.log")
        views = values(consume(settings, settings.topics.page_views, expected=2,
                               timeout_s=60, settle_s=1.0))
    finally:
        collector.stop()
    assert [view["url"] for view in views] == [
        first_url, f"{origin}/second.html?utm_source=snippet"]
    first, second = views
    assert first["anonymous_id"] == second["anonymous_id"]
    assert uuid.UUID(first["anonymous_id"]).version == 4
    assert first["referrer"] is None and second["referrer"] == first_url
    assert first["event_id"] != second["event_id"]
    assert first["ts"].endswith("Z") and first["ts"] <= second["ts"]
