import http.server
import sys
import threading

import pytest

from personify.stack.proc import Usage, is_zombie, parse_usage, stat_fields
from personify.stack.processes import PROGRESS_EVERY_S, StackError, wait_until
from personify.stack.worker_process import (
    WorkerProcess,
    http_get,
    stack_worker,
    total,
    totals_by_name,
)
from streams.topology import Settings

# A /proc/<pid>/stat line whose command name holds a space and a closing parenthesis.
STAT = ("4242 (python -m x) y) S 1 4242 4242 0 -1 4194560 12133 0 3 0 "
        "250 75 0 0 20 0 9 0 123456 1048576000 51200 18446744073709551615")
STATUS = "Name:\tpython\nVmPeak:\t 1024000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  150000 kB\n"


def test_stat_fields_start_at_the_state_after_the_last_closing_parenthesis():
    assert stat_fields(STAT)[:3] == ["S", "1", "4242"]


def test_usage_is_user_plus_system_ticks_and_the_peak_resident_memory():
    assert parse_usage(STAT, STATUS, clock_ticks=100) == Usage(3.25, 204800 * 1024)


def test_usage_without_a_peak_line_has_no_peak():
    assert parse_usage(STAT, "Name:\tpython\n", clock_ticks=100).peak_rss_bytes == 0


@pytest.mark.parametrize(("state", "zombie"), [("S", False), ("R", False), ("Z", True)])
def test_only_the_z_state_is_a_zombie(state, zombie):
    assert is_zombie(STAT.replace(") S ", f") {state} ")) is zombie


EXPOSITION = """\
# HELP personify_events_consumed_total Events read.
# TYPE personify_events_consumed_total counter
personify_events_consumed_total{topic="page-views-v1"} 7.0
personify_events_consumed_total{topic="signups-v1"} 2.0
# HELP personify_credits_emitted_total Credits.
# TYPE personify_credits_emitted_total counter
personify_credits_emitted_total{model="first_touch",op="assert"} 3.0
personify_credits_emitted_total{model="linear",op="assert"} 4.0
personify_credits_emitted_total{model="linear",op="retract"} 1.0
"""


def test_totals_sum_each_sample_name_over_its_labels():
    totals = totals_by_name(EXPOSITION)
    assert totals["personify_events_consumed_total"] == 9.0
    assert totals["personify_credits_emitted_total"] == 8.0


@pytest.mark.parametrize(("labels", "expected"), [
    ({}, 8.0),
    ({"model": "linear"}, 5.0),
    ({"model": "linear", "op": "retract"}, 1.0),
    ({"model": "u_shaped"}, 0.0),
])
def test_a_metric_sums_the_samples_whose_labels_include_the_asked_ones(labels, expected):
    assert total(EXPOSITION, "personify_credits_emitted_total", **labels) == expected


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _wait(clock, ready, tmp_path, **options):
    log = tmp_path / "worker.log"
    log.write_text("starting\nKafkaError: broker down\n")
    return wait_until(ready, timeout_s=30, what="the worker", log=log, poll_s=0.5,
                      clock=clock, sleep=clock.sleep, **options)


def test_the_wait_returns_the_seconds_until_ready(tmp_path):
    clock = FakeClock()
    assert _wait(clock, lambda: clock.now >= 112.0, tmp_path) == 12.0


def test_a_process_that_exits_fails_the_wait_at_once_with_its_log(tmp_path):
    clock = FakeClock()
    gone = iter([None, None, "exited with code 3"])
    with pytest.raises(StackError) as failed:
        _wait(clock, lambda: False, tmp_path, gone=lambda: next(gone))
    assert clock.now == 101.0
    assert "the worker exited with code 3 before it was ready" in str(failed.value)
    assert str(failed.value).endswith("KafkaError: broker down")


def test_a_wait_past_its_timeout_says_so_with_the_log(tmp_path):
    clock = FakeClock()
    with pytest.raises(StackError, match=r"within 30 s(.|\n)*broker down"):
        _wait(clock, lambda: False, tmp_path)
    assert clock.now == 130.0


def test_a_long_wait_says_it_goes_on(tmp_path):
    clock, heard = FakeClock(), []
    _wait(clock, lambda: clock.now >= 125.0, tmp_path, progress=heard.append)
    assert len(heard) == int(25 // PROGRESS_EVERY_S)
    assert heard[0] == "  still waiting for the worker (10 s of 30)"


class Quitter(WorkerProcess):
    def argv(self):
        return [sys.executable, "-c", "print('no broker at 127.0.0.1:9'); raise SystemExit(70)"]


def test_a_worker_that_exits_on_start_fails_fast_with_its_log(tmp_path):
    worker = Quitter(Settings(web_port=9), tmp_path / "worker.log", poll_s=0.05)
    with pytest.raises(StackError) as failed:
        worker.start(timeout_s=60)
    assert "exited with code 70" in str(failed.value)
    assert "no broker at 127.0.0.1:9" in str(failed.value)
    assert not worker.alive()


def test_the_stack_worker_is_found_again_by_its_own_command_line(tmp_path):
    worker = stack_worker(Settings(cache_dir=tmp_path))
    assert worker.managed.marker in " ".join(worker.argv())
    assert worker.log == worker.managed.log_file
    assert "--loglevel" not in worker.argv()
    assert WorkerProcess(Settings(), tmp_path / "w.log").argv()[-2:] == ["--loglevel", "warning"]


@pytest.fixture
def echo_server():
    """Answers 200 with the Authorization header it got, or 401 without one."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            given = self.headers.get("Authorization", "")
            self.send_response(200 if given else 401)
            self.end_headers()
            self.wfile.write(given.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_requests_bear_the_api_token_when_one_is_set(echo_server):
    assert http_get(Settings(web_port=echo_server, api_token="s3cret"), "/ready") == (
        200, b"Bearer s3cret")
    assert http_get(Settings(web_port=echo_server), "/ready") == (401, b"")


def test_nothing_answering_is_status_zero():
    assert http_get(Settings(web_port=9), "/ready", timeout_s=1) == (0, b"")
