"""Sustained throughput: one worker drains a pre-loaded backlog from an empty state.

The clock starts when the worker answers /ready and stops when the credits topic holds every
expected credit record; events the worker consumed before /ready answered are left out of
the count, so start-up time is in neither the numerator nor the denominator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.broker import end_offsets, group_lag, payload_bytes
from bench.kafka_tools import disk_bytes
from bench.progress import say
from bench.sandbox import Sandbox
from bench.workload import Backlog
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


def drain_backlog(worker: WorkerProcess, sandbox: Sandbox, backlog: Backlog,
                  timeout_s: float) -> Throughput:
    """Start `worker` on the pre-loaded topics and time it until every credit is out."""
    ready_s = worker.start()
    ready_at = time.monotonic()
    before = worker.usage()
    consumed_at_ready = worker.metrics().get(CONSUMED, 0.0)
    say(f"worker {worker.pid} ready in {ready_s:.1f} s; draining {backlog.events:,} events "
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
                              f"after {timeout_s:.0f} s:\n{worker.log_tail()}")
        if not consumed_all_at or now - last_report >= REPORT_EVERY_S:
            consumed = worker.metrics().get(CONSUMED, 0.0)
            if not consumed_all_at and consumed >= backlog.events:
                consumed_all_at = now
            if now - last_report >= REPORT_EVERY_S:
                last_report = now
                lag = group_lag(bootstrap, sandbox.settings.app_id, internal)
                say(f"  {consumed:,.0f} / {backlog.events:,} events read, {credits:,} / "
                    f"{backlog.expected_credits:,} credit records out; not yet committed: "
                    + ", ".join(f"{t.rsplit('-v1', 1)[0]} {n:,}" for t, n in lag.items()))
        time.sleep(POLL_S)
    done_at = time.monotonic()
    after = worker.usage()
    seconds = done_at - ready_at
    measured = backlog.events - int(consumed_at_ready)
    cpu = after.cpu_s - before.cpu_s
    read_s = (consumed_all_at or done_at) - ready_at
    return Throughput(
        start_to_ready_s=ready_s, events_measured=measured, seconds=seconds,
        events_per_s=measured / seconds, cpu_s_per_1000_events=1000 * cpu / measured,
        cpu_utilisation=cpu / seconds, peak_rss_mb=after.peak_rss_bytes / 2**20,
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
