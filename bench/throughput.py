"""Sustained throughput: workers drain a pre-loaded backlog from an empty state.

The clock starts when every worker answers /ready and stops when the credits topic holds every
expected credit record; events consumed before /ready answered are left out of the count, so
start-up time is in neither the numerator nor the denominator. CPU and memory are the workers'
together (peak RSS: the largest worker's).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from bench.broker import end_offsets, group_lag, payload_bytes
from bench.kafka_tools import disk_bytes
from bench.progress import say
from bench.sandbox import Sandbox
from bench.workload import Backlog, produce_backlog
from personify.stack.processes import StackError
from personify.stack.worker_process import WorkerProcess

CONSUMED = "personify_events_consumed_total"
POLL_S = 0.2
REPORT_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class Throughput:
    start_to_ready_s: float
    """Spawn to /ready with empty state and empty changelogs: the start-up floor."""
    events_measured: int
    seconds: float
    events_per_s: float
    cpu_s_per_1000_events: float
    cpu_utilisation: float
    """CPU seconds over wall seconds while draining (1.0 = one core busy)."""
    peak_rss_mb: float
    last_input_consumed_s: float
    """When the last input event was read, from /ready (credits may follow later)."""
    read_events_per_s: float
    """The input side alone: events over `last_input_consumed_s`."""


def drain_backlog(workers: list[WorkerProcess], sandbox: Sandbox, backlog: Backlog,
                  timeout_s: float, produce_when_ready: bool = False) -> Throughput:
    """Start `workers` side by side and time them until every credit is out: on the pre-loaded
    topics, or, with `produce_when_ready`, on the backlog sent once every worker is ready (so
    that no worker drains alone while another starts)."""
    spawned_at = time.monotonic()
    for worker in workers:
        worker.spawn()
    for worker in workers:
        worker.wait_ready(worker.start_timeout_s)
    ready_at = time.monotonic()
    ready_s = ready_at - spawned_at
    before = [worker.usage() for worker in workers]

    last_read = [0.0] * len(workers)

    def consumed() -> float:
        """Events read by the workers so far; a worker too busy to answer within the
        harness's timeout (its loop in a long take) counts with its last answer."""
        for n, worker in enumerate(workers):
            with contextlib.suppress(StackError):
                last_read[n] = worker.metrics().get(CONSUMED, 0.0)
        return sum(last_read)

    consumed_at_ready = consumed()
    if produce_when_ready:
        produce_backlog(backlog, sandbox.settings)
    say(f"{len(workers)} worker(s) ready in {ready_s:.1f} s; draining {backlog.events:,} events "
        f"toward {backlog.expected_credits:,} credit records")
    credits_topic = sandbox.settings.topics.credits
    bootstrap = sandbox.settings.kafka_bootstrap
    internal = [sandbox.settings.topics.device_events, sandbox.settings.topics.person_events]
    last_report, consumed_all_at = ready_at, 0.0
    while True:
        now = time.monotonic()
        credits = end_offsets(bootstrap, [credits_topic])[credits_topic]
        if credits >= backlog.expected_credits:
            break
        if now - ready_at > timeout_s:
            raise StackError(f"{credits:,} of {backlog.expected_credits:,} credit records "
                             f"after {timeout_s:.0f} s:\n{workers[0].log_tail()}")
        if not consumed_all_at or now - last_report >= REPORT_EVERY_S:
            read = consumed()
            if not consumed_all_at and read >= backlog.events:
                consumed_all_at = now
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                lag = group_lag(bootstrap, sandbox.settings.app_id, internal)
                say(f"  {read:,.0f} / {backlog.events:,} events read, {credits:,} / "
                    f"{backlog.expected_credits:,} credit records out; not yet committed: "
                    + ", ".join(f"{t.rsplit('-v1', 1)[0]} {n:,}" for t, n in lag.items()))
        time.sleep(POLL_S)
    done_at = time.monotonic()
    after = [worker.usage() for worker in workers]
    seconds = done_at - ready_at
    measured = backlog.events - int(consumed_at_ready)
    cpu = sum(a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True))
    read_s = (consumed_all_at or done_at) - ready_at
    return Throughput(
        start_to_ready_s=ready_s, events_measured=measured, seconds=seconds,
        events_per_s=measured / seconds, cpu_s_per_1000_events=1000 * cpu / measured,
        cpu_utilisation=cpu / seconds,
        peak_rss_mb=max(a.peak_rss_bytes for a in after) / 2**20,
        last_input_consumed_s=read_s, read_events_per_s=measured / read_s)


@dataclass(frozen=True, slots=True)
class WriteCost:
    """What processing the backlog wrote to the broker, per input event."""

    changelog_records: int
    changelog_payload_bytes: int
    changelog_records_per_event: float
    changelog_payload_bytes_per_event: float
    disk_bytes_per_event: dict[str, float]
    """Segment bytes on disk per input event: inputs, internal re-keyed topics, changelogs,
    outputs (credits, profiles, dead letters)."""


def write_cost(sandbox: Sandbox, backlog: Backlog) -> WriteCost:
    settings = sandbox.settings
    names = settings.topics
    changelogs = sandbox.changelog_topics()
    groups = {
        "inputs": list(names.inputs()),
        "internal": [names.device_events, names.person_events],
        "changelogs": changelogs,
        "outputs": [names.credits, names.profiles, names.dead_letters],
    }
    on_disk = disk_bytes(settings, [t for topics in groups.values() for t in topics])
    records = sum(end_offsets(settings.kafka_bootstrap, changelogs).values())
    size = sum(payload_bytes(settings.kafka_bootstrap, changelogs).values())
    return WriteCost(
        changelog_records=records, changelog_payload_bytes=size,
        changelog_records_per_event=records / backlog.events,
        changelog_payload_bytes_per_event=size / backlog.events,
        disk_bytes_per_event={group: sum(on_disk[t] for t in topics) / backlog.events
                              for group, topics in groups.items()})
