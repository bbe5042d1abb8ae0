"""The command line's behaviour at its edges."""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from personify import cli
from personify.stack.kafka import KafkaBroker
from personify.stack.processes import stop_process
from personify.stack.worker_process import stack_worker
from streams.topology import Settings


def test_a_reader_that_goes_away_ends_the_command_quietly_as_unix_tools_do():
    """`personify stack status | head -1`: no traceback, the exit status of a SIGPIPE."""
    program = """
import sys
from personify import cli
from personify.stack import services

def status(settings):
    raise BrokenPipeError(32, "Broken pipe")

services.status = status
sys.exit(cli.main(["stack", "status"]))
"""
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 141
    assert ended.stderr == ""


ROOT = Path(__file__).resolve().parents[2]


def personify(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "personify.cli", *argv], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def dead_address() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def assert_one_line_error(ended: subprocess.CompletedProcess, *phrases: str) -> str:
    assert ended.returncode == 2, ended.stderr
    assert "Traceback" not in ended.stderr
    last = ended.stderr.strip().splitlines()[-1]
    for phrase in phrases:
        assert phrase in last
    return last


def test_version_names_the_package_version():
    ended = personify("--version")
    assert ended.returncode == 0
    assert ended.stdout.strip() == f"personify {cli.version()}"


def test_every_option_of_every_command_says_what_it_does():
    def undocumented(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from undocumented(sub, f"{path} {name}")
            elif not action.help:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    missing = [gap for name in [None, *cli.TOOL_COMMANDS]
               for gap in undocumented(cli.build_parser(name), "personify")
               if name is None or gap.startswith(f"personify {name} ")]
    assert missing == []


def test_send_of_a_missing_file_says_how_to_make_one(tmp_path):
    assert_one_line_error(personify("send", str(tmp_path / "events.jsonl")),
                          "events.jsonl: no such file", "personify simulate --out")


def test_send_to_a_broker_that_is_not_there_stops_within_seconds_asking_whether_the_stack_is_up(
        tmp_path):
    events = tmp_path / "events.jsonl"
    event = {"schema": "billing/1", "event_id": "p-1", "ts": "2025-01-01T10:00:00Z",
             "user_id": "user-1", "kind": "payment", "amount_minor": 4900, "currency": "EUR"}
    events.write_bytes(b"\n".join(orjson.dumps(event | {"event_id": f"p-{n}"})
                                  for n in range(50)))
    address = dead_address()
    started = time.monotonic()
    ended = personify("send", str(events), "--no-progress", PERSONIFY_KAFKA_BOOTSTRAP=address)
    assert time.monotonic() - started < 20
    assert_one_line_error(ended, f"Kafka unreachable at {address}", "is the stack up?",
                          "50 event(s) not delivered")
    assert ended.stderr.count("Connection refused") == 1  # librdkafka's repeats held back


def test_credits_with_no_broker_asks_whether_the_stack_is_up():
    address = dead_address()
    assert_one_line_error(personify("credits", PERSONIFY_KAFKA_BOOTSTRAP=address),
                          f"Kafka unreachable at {address}", "`personify stack up`")


def test_debug_shows_the_traceback(tmp_path):
    ended = personify("--debug", "send", str(tmp_path / "events.jsonl"))
    assert ended.returncode != 0
    assert "Traceback" in ended.stderr and "no such file" in ended.stderr


def test_a_setting_that_is_not_valid_is_named():
    assert_one_line_error(personify("credits", PERSONIFY_PARTITIONS="four"),
                          "PERSONIFY_PARTITIONS='four'")


@pytest.mark.parametrize(("error", "phrases"), [
    (ModuleNotFoundError("No module named 'faust'", name="faust"),
     ("pip install 'personify[pipeline]'", "make demo")),
    (PermissionError(13, "Permission denied", "events.jsonl"),
     ("events.jsonl: Permission denied",)),
    (RuntimeError("unexpected"), ("RuntimeError: unexpected", "personify --debug")),
])
def test_other_errors_are_explained_in_one_line(error, phrases):
    line, code = cli.explain(error)
    assert code != 0 and "\n" not in line
    assert all(phrase in line for phrase in phrases)


def test_stack_status_says_when_a_pid_file_and_the_configured_port_disagree(tmp_path):
    cache = tmp_path / "cache"
    settings = Settings(cache_dir=cache)
    kafka, worker = KafkaBroker(settings).process, stack_worker(settings).managed
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
                for marker in (kafka.marker, worker.marker)]
    try:
        kafka.run_dir.mkdir(parents=True)
        kafka.pid_file.write_text(str(sleepers[0].pid))
        worker.pid_file.write_text(str(sleepers[1].pid))
        ended = personify("stack", "status", PERSONIFY_CACHE_DIR=str(cache),
                          PERSONIFY_KAFKA_BOOTSTRAP=dead_address(),
                          PERSONIFY_WEB_PORT=dead_address().rpartition(":")[2])
    finally:
        for sleeper in sleepers:
            stop_process(sleeper)
    lines = dict(line.split(maxsplit=1) for line in ended.stdout.splitlines())
    assert ended.returncode == 1
    assert lines["kafka"].startswith("MISMATCH") and f"pid {sleepers[0].pid}" in lines["kafka"]
    assert "nothing answers" in lines["kafka"]
    assert lines["worker"].startswith("MISMATCH") and "PERSONIFY_WEB_PORT" in lines["worker"]


def test_stack_status_says_when_a_port_answers_for_a_process_personify_did_not_start(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        ended = personify("stack", "status", PERSONIFY_CACHE_DIR=str(tmp_path),
                          PERSONIFY_WEB_PORT=str(server.getsockname()[1]))
    worker = next(line for line in ended.stdout.splitlines() if line.startswith("worker"))
    assert "FOREIGN" in worker and "did not start" in worker
