"""`python -m bench.collector`: the HTTP collector's throughput, latency and CPU cost.

One `personify collect` child process on the local broker, in a sandbox of its own (fresh
topics, deleted at the end). Clients are aiohttp sessions in this process, on the same
machine, posting `{"batch": [...]}` of `--batch` events (90 % page views, 5 % signups, 5 %
payments) with Basic auth:

1. **Throughput**: `--concurrency` clients post back to back for `--seconds`; events
   acknowledged (2xx) per second, and the collector's CPU seconds (user + system, from /proc)
   per 1,000 events.
2. **Latency at half that rate**: batches are sent open-loop on a fixed schedule at half the
   measured rate for `--seconds`; each latency runs from the batch's scheduled time to its
   answer (so a slow answer delays no later measurement: no coordinated omission).

Then the topics' end offsets are checked against the events acknowledged: a 2xx means stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

from bench.progress import say
from bench.report import RESULTS_DIR, machine
from bench.sandbox import Sandbox, broker_missing
from personify.stack.proc import usage_of
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
    failed_requests: int
    stored_events: int
    acknowledged_events: int

    def table(self) -> str:
        rows = [
            ("throughput", f"{self.events_per_s:,.0f} events/s ({self.requests_per_s:,.0f} "
                           f"requests/s of {self.batch} events, {self.concurrency} clients)"),
            ("CPU", f"{self.cpu_s_per_1000_events:.3f} CPU-s per 1,000 events (collector)"),
            ("latency at half rate", f"p50 {self.latency_p50_ms:.1f} ms, p99 "
                                     f"{self.latency_p99_ms:.1f} ms, max "
                                     f"{self.latency_max_ms:.1f} ms at "
                                     f"{self.offered_events_per_s:,.0f} events/s"),
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

    async def paced(self, events_per_s: float, seconds: float) -> list[float]:
        """Batches on a fixed schedule; latencies (s) from each scheduled time to its answer."""
        interval = self.batch / events_per_s
        latencies: list[float] = []
        async with _session(256) as session:
            async def one(scheduled: float) -> None:
                await self.post(session)
                latencies.append(time.monotonic() - scheduled)

            tasks, start = [], time.monotonic() + 0.1
            for number in range(int(seconds / interval)):
                scheduled = start + number * interval
                await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                tasks.append(asyncio.create_task(one(scheduled)))
            await asyncio.gather(*tasks)
        return latencies


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
    offered = rate / 2
    say(f"latency: {offered:,.0f} events/s offered for {options.seconds:.0f} s")
    latencies = await clients.paced(offered, options.seconds)
    return {"events_per_s": rate, "requests_per_s": rate / options.batch,
            "cpu_s_per_1000_events": 1000 * cpu / max(events, 1),
            "offered_events_per_s": offered,
            "latency_p50_ms": 1000 * percentile(latencies, 0.50),
            "latency_p99_ms": 1000 * percentile(latencies, 0.99),
            "latency_max_ms": 1000 * max(latencies),
            "failed_requests": clients.failed,
            "acknowledged_events": clients.acknowledged}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (100)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients (default 8)")
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
