"""`python -m bench.collector`: the HTTP collector's throughput, latency and CPU cost.

One `personify collect` child process on the local broker, in a sandbox of its own (fresh
topics, deleted at the end). Clients are aiohttp sessions in this process, on the same
machine, posting `{"batch": [...]}` of `--batch` events (90 % page views, 5 % signups, 5 %
payments) with Basic auth:

1. **Throughput**: `--concurrency` clients post back to back for `--seconds`; events
   acknowledged (2xx) per second, and the collector's CPU seconds (user + system, from /proc)
   per 1,000 events.
2. **Latency at `--rate`** (default 2,500 events/s: half the 5,000 events/s aimed at), then
   at half the rate measured in 1 (a stress figure): batches are sent open-loop on a fixed
   schedule for `--seconds`, the first second's batches excluded (connections opening). Each
   batch is its own task on up to 256 connections, so a slow answer delays no later send (no
   coordinated omission). The latency runs from the moment the client sent the batch to its
   answer; the client's garbage collector is paused during the phase. Beside it: the latency
   from the scheduled time (which also charges the client's own lag, shown too: the client
   shares the two cores) and the share of requests the collector answered within 50 ms by its
   own histogram (`personify_collector_request_duration_seconds`, from the request's arrival).
   And how busy the machine was meanwhile: the seconds the collector's threads waited for a
   CPU per second of the phase (`/proc/<pid>/task/*/schedstat`), and the share of time some
   task on the machine waited for one (`/proc/pressure/cpu`). On shared cores these say
   whether a tail is the collector's or its neighbours'.

Then the topics' end offsets are checked against the events acknowledged: a 2xx means stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import ClientSession, ClientTimeout, TCPConnector
from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.progress import say
from bench.report import RESULTS_DIR, machine
from bench.sandbox import Sandbox, broker_missing
from personify.stack.proc import cpu_pressure_s, run_queue_wait_s, usage_of
from personify.stack.processes import (
    StackError,
    exit_status,
    free_port,
    spawn,
    stop_process,
    wait_until,
)
from streams.topology import Settings

WRITE_KEY = "bench-key"
AUTHORIZATION = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


@dataclass(frozen=True)
class CollectorResults:
    batch: int
    concurrency: int
    seconds: float
    events_per_s: float
    requests_per_s: float
    cpu_s_per_1000_events: float
    offered_events_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    from_schedule_p99_ms: float
    client_lag_p99_ms: float
    collector_within_50ms: float
    collector_cpu_wait: float
    """Seconds the collector's threads waited for a CPU, per second of the latency phase."""
    cpu_pressure: float | None
    """Share of the latency phase in which some task on the machine waited for a CPU."""
    load_average: float
    stress_events_per_s: float
    stress_p50_ms: float
    stress_p99_ms: float
    stress_max_ms: float
    failed_requests: int
    stored_events: int
    acknowledged_events: int

    def table(self) -> str:
        rows = [
            ("throughput", f"{self.events_per_s:,.0f} events/s ({self.requests_per_s:,.0f} "
                           f"requests/s of {self.batch} events, {self.concurrency} clients)"),
            ("CPU", f"{self.cpu_s_per_1000_events:.3f} CPU-s per 1,000 events (collector)"),
            ("latency", f"p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms, "
                        f"max {self.latency_max_ms:.1f} ms at "
                        f"{self.offered_events_per_s:,.0f} events/s"),
            ("latency from the schedule", f"p99 {self.from_schedule_p99_ms:.1f} ms (client "
                                          f"lag p99 {self.client_lag_p99_ms:.1f} ms)"),
            ("answered within 50 ms", f"{100 * self.collector_within_50ms:.2f} % (collector's "
                                      f"histogram)"),
            ("machine during it", f"collector waited {self.collector_cpu_wait:.2f} s per s "
                                  f"for a CPU; CPU pressure {_share(self.cpu_pressure)}; "
                                  f"load average {self.load_average:.1f} on "
                                  f"{os.cpu_count()} cores"),
            ("latency at half the ceiling", f"p50 {self.stress_p50_ms:.1f} ms, p99 "
                                            f"{self.stress_p99_ms:.1f} ms, max "
                                            f"{self.stress_max_ms:.1f} ms at "
                                            f"{self.stress_events_per_s:,.0f} events/s"),
            ("stored", f"{self.stored_events:,} of {self.acknowledged_events:,} acknowledged "
                       f"events on the topics; {self.failed_requests} failed requests"),
        ]
        return "\n".join(["| collector | figure |", "|---|---|",
                          *(f"| {name} | {value} |" for name, value in rows)])


def batch_body(size: int) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    events = []
    for index in range(size):
        anonymous_id, user_id = uuid.uuid4().hex, f"user-{uuid.uuid4().hex[:12]}"
        common = {"event_id": str(uuid.uuid4()), "ts": now}
        if index % 20 == 0:
            events.append({"schema": "signup/1", **common, "anonymous_id": anonymous_id,
                           "user_id": user_id, "traits": {"company_size": 40}})
        elif index % 20 == 1:
            events.append({"schema": "billing/1", **common, "user_id": user_id,
                           "kind": "payment", "amount_minor": 4900, "currency": "USD"})
        else:
            events.append({"schema": "page_view/1", **common, "anonymous_id": anonymous_id,
                           "url": f"https://www.example.com/p/{index}?utm_source=bench",
                           "referrer": "https://www.google.com/"})
    return orjson.dumps({"batch": events})


class Clients:
    def __init__(self, port: int, batch: int) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/batch"
        self.batch = batch
        self.bodies = [batch_body(batch) for _ in range(64)]
        self.sent = 0
        self.acknowledged = 0
        self.failed = 0

    async def post(self, session: ClientSession) -> bool:
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        body = body.replace(b'"event_id":"', f'"event_id":"{self.sent}-'.encode())
        async with session.post(self.url, data=body,
                                headers={"Authorization": AUTHORIZATION}) as response:
            answer = await response.read()
        if response.status == 200:
            self.acknowledged += orjson.loads(answer)["accepted"]
            return True
        self.failed += 1
        return False

    async def flat_out(self, concurrency: int, seconds: float) -> float:
        """Back-to-back posts by `concurrency` clients; returns the seconds taken."""
        deadline = time.monotonic() + seconds
        async with _session(concurrency) as session:
            async def client() -> None:
                while time.monotonic() < deadline:
                    await self.post(session)

            started = time.monotonic()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return time.monotonic() - started

    async def paced(self, events_per_s: float, seconds: float) -> Paced:
        """Batches on a fixed schedule, after a second of the same schedule not counted."""
        interval = self.batch / events_per_s
        paced = Paced([], [], [])
        async with _session(256) as session:
            async def one(scheduled: float, counted: bool) -> None:
                sent = time.monotonic()
                await self.post(session)
                if counted:
                    answered = time.monotonic()
                    paced.latencies.append(answered - sent)
                    paced.from_schedule.append(answered - scheduled)
                    paced.lags.append(sent - scheduled)

            tasks, start = [], time.monotonic() + 0.1
            warm_up = int(1.0 / interval)
            gc.collect()
            gc.disable()
            try:
                for number in range(warm_up + int(seconds / interval)):
                    scheduled = start + number * interval
                    await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                    tasks.append(asyncio.create_task(one(scheduled, number >= warm_up)))
                await asyncio.gather(*tasks)
            finally:
                gc.enable()
        return paced


@dataclass(frozen=True)
class Paced:
    latencies: list[float]
    """Seconds from the moment each batch was sent to its answer."""
    from_schedule: list[float]
    """Seconds from each batch's scheduled time to its answer."""
    lags: list[float]
    """Seconds from each batch's scheduled time to the moment the client sent it."""


def batch_requests_within(port: int, seconds: float) -> tuple[float, float]:
    """(`/v1/batch` requests answered within `seconds`, all of them) by the collector's own
    histogram; `seconds` must be one of its bucket bounds."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    within = total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") != "/v1/batch":
                continue
            if sample.name.endswith("_bucket") and float(sample.labels["le"]) == seconds:
                within = sample.value
            elif sample.name.endswith("_count"):
                total = sample.value
    return within, total


def _session(connections: int) -> ClientSession:
    return ClientSession(connector=TCPConnector(limit=connections),
                         timeout=ClientTimeout(total=30))


def start_collector(settings: Settings, workdir: Path) -> tuple[subprocess.Popen, int]:
    config = workdir / "collector.toml"
    config.write_text(f'[sources.bench]\nwrite_key = "{WRITE_KEY}"\n')
    port = free_port()
    env = replace(settings, collector_port=port, collector_config_file=str(config)).to_env()
    process = spawn([sys.executable, "-m", "personify.cli", "collect"],
                    workdir / "collector.log", env)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, timeout_s=30, what=f"the collector on {port}",
                   log=workdir / "collector.log", gone=lambda: exit_status(process), poll_s=0.2)
    except StackError:
        process.kill()
        raise
    return process, port


def stored_events(settings: Settings) -> int:
    """Messages on the three input topics (end offsets: the topics are the run's own)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"bench-count-{uuid.uuid4().hex}"})
    try:
        total = 0
        for topic in settings.topics.inputs():
            for partition in range(settings.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                         timeout=10)
                total += high
        return total
    finally:
        consumer.close()


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(options: argparse.Namespace, port: int, pid: int) -> dict:
    clients = Clients(port, options.batch)
    say(f"warm-up: {options.concurrency} clients for 3 s")
    await clients.flat_out(options.concurrency, 3.0)
    warm_acknowledged = clients.acknowledged
    say(f"throughput: {options.concurrency} clients, batches of {options.batch}, "
        f"{options.seconds:.0f} s")
    cpu_before = usage_of(pid).cpu_s
    elapsed = await clients.flat_out(options.concurrency, options.seconds)
    cpu = usage_of(pid).cpu_s - cpu_before
    events = clients.acknowledged - warm_acknowledged
    rate = events / elapsed
    say(f"  {rate:,.0f} events/s, {1000 * cpu / max(events, 1):.3f} CPU-s per 1,000 events")
    say(f"latency: {options.rate:,.0f} events/s offered for {options.seconds:.0f} s")
    within_before, total_before = batch_requests_within(port, 0.05)
    waited, pressure, started = run_queue_wait_s(pid), cpu_pressure_s(), time.monotonic()
    paced = await clients.paced(options.rate, options.seconds)
    phase = time.monotonic() - started
    waited = (run_queue_wait_s(pid) - waited) / phase
    pressure_after = cpu_pressure_s()
    within_after, total_after = batch_requests_within(port, 0.05)
    say(f"  p99 {1000 * percentile(paced.latencies, 0.99):.1f} ms")
    stress = rate / 2
    say(f"latency at half the ceiling: {stress:,.0f} events/s offered for "
        f"{options.seconds:.0f} s")
    stressed = await clients.paced(stress, options.seconds)
    return {"events_per_s": rate, "requests_per_s": rate / options.batch,
            "cpu_s_per_1000_events": 1000 * cpu / max(events, 1),
            "offered_events_per_s": options.rate,
            "latency_p50_ms": 1000 * percentile(paced.latencies, 0.50),
            "latency_p99_ms": 1000 * percentile(paced.latencies, 0.99),
            "latency_max_ms": 1000 * max(paced.latencies),
            "from_schedule_p99_ms": 1000 * percentile(paced.from_schedule, 0.99),
            "client_lag_p99_ms": 1000 * percentile(paced.lags, 0.99),
            "collector_within_50ms": (within_after - within_before)
                                     / max(total_after - total_before, 1),
            "collector_cpu_wait": waited,
            "cpu_pressure": None if pressure is None or pressure_after is None
                            else (pressure_after - pressure) / phase,
            "load_average": os.getloadavg()[0],
            "stress_events_per_s": stress,
            "stress_p50_ms": 1000 * percentile(stressed.latencies, 0.50),
            "stress_p99_ms": 1000 * percentile(stressed.latencies, 0.99),
            "stress_max_ms": 1000 * max(stressed.latencies),
            "failed_requests": clients.failed,
            "acknowledged_events": clients.acknowledged}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (100)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients (default 8)")
    parser.add_argument("--rate", type=float, default=2_500.0,
                        help="events/s offered in the latency phase (default 2,500: half the "
                             "5,000 aimed at)")
    options = parser.parse_args(argv)
    base = Settings.from_env()
    if broker_missing(base):
        return 2
    sandbox = Sandbox.create(base)
    process, port = start_collector(sandbox.settings, sandbox.workdir)
    say(f"run {sandbox.token}: collector pid {process.pid} on port {port}")
    try:
        figures = asyncio.run(measure(options, port, process.pid))
        stored = stored_events(sandbox.settings)
    finally:
        stop_process(process)
        say(f"deleted {len(sandbox.clean_up())} topics")
    results = CollectorResults(batch=options.batch, concurrency=options.concurrency,
                               seconds=options.seconds, stored_events=stored, **figures)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"collector-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_bytes(orjson.dumps({**asdict(results), "machine": machine()},
                                  option=orjson.OPT_INDENT_2))
    say(f"results: {path}")
    print(results.table())
    return 0 if results.stored_events == results.acknowledged_events else 1


if __name__ == "__main__":
    sys.exit(main())
