"""`python -m bench [--full]`: every benchmark in one run on the local stack.

Order: the backlog is generated and produced; the ceilings run on it while no worker runs;
one worker drains it (throughput, CPU, memory, what it wrote); the same worker then takes a
second population, preloaded in part and then live at three offered rates (latency); then it
is killed and restarted warm and cold (recovery). The run's topics and groups are deleted at
the end, whatever happened.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime

from bench.ceilings import measure_ceilings
from bench.latency import Preload, measure_rates, preload
from bench.progress import say
from bench.recovery import measure_recovery
from bench.report import Results, machine
from bench.sandbox import Sandbox, broker_missing
from bench.throughput import Throughput, drain_backlog, write_cost
from bench.workload import LIVE_SEED_OFFSET, Backlog, live_stream, produce_backlog, simulate
from personify.stack.processes import free_port
from personify.stack.worker_process import WorkerProcess
from streams.topology import Settings

QUICK = {"people": 20_000, "rate_seconds": 20.0}
FULL = {"people": 100_000, "rate_seconds": 60.0}
SHARES = (0.25, 0.50, 0.75)
"""Offered rates, as shares of the measured sustained throughput."""
WARMUP_SHARE = 0.25
"""The first quarter of each rate's run is sent but not measured."""
PRELOAD_SHARE = 0.6
"""The live population's first 60 % of events is preloaded; the rest is the measured stream."""


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help=f"{FULL['people']:,} people and {FULL['rate_seconds']:.0f} s per "
                             f"rate (default {QUICK['people']:,} and "
                             f"{QUICK['rate_seconds']:.0f} s)")
    parser.add_argument("--people", type=int, help="simulated people in the backlog")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument("--rate-seconds", type=float, help="seconds of live stream per rate")
    parser.add_argument("--drain-timeout", type=float, default=1800.0,
                        help="give up on the backlog after this many seconds (default 1800)")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the open-loop latency runs (for large --people, where "
                             "preloading the live population takes long)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's topics and files (for inspection)")
    options = parser.parse_args(argv)
    defaults = FULL if options.full else QUICK
    options.people = options.people or defaults["people"]
    options.rate_seconds = options.rate_seconds or defaults["rate_seconds"]
    return options


def run(options: argparse.Namespace, base: Settings, sandbox: Sandbox, worker: WorkerProcess,
        started_at: datetime) -> Results:
    settings = sandbox.settings
    say(f"backlog: simulating {options.people:,} people (seed {options.seed})")
    backlog = Backlog.of(simulate(sandbox.workdir / "backlog.jsonl", people=options.people,
                                  seed=options.seed))
    say(f"backlog: producing {backlog.events:,} events ({backlog.bytes / 2**20:.1f} MB)")
    produce_s = produce_backlog(backlog, settings)
    say(f"  produced in {produce_s:.1f} s")

    ceilings = measure_ceilings(sandbox, backlog)

    say("throughput: one worker, empty state, RocksDB store")
    throughput = drain_backlog([worker], sandbox, backlog, timeout_s=options.drain_timeout)
    say(f"  {throughput.events_per_s:,.0f} events/s, {throughput.cpu_s_per_1000_events:.3f} "
        f"CPU-s per 1,000 events, peak RSS {throughput.peak_rss_mb:,.0f} MB")
    say("write cost: reading the changelogs and the broker's log sizes")
    cost = write_cost(sandbox, backlog)

    preloaded, latency = None, []
    if not options.no_latency:
        preloaded, latency = measure_latency(options, sandbox, backlog,
                                                      throughput.events_per_s)

    recovery = measure_recovery(worker, sandbox)
    worker.stop()
    two_workers = measure_two_workers(options, base, backlog)
    say(f"  two workers: {two_workers.events_per_s:,.0f} events/s "
        f"({two_workers.events_per_s / throughput.events_per_s:.2f}× one worker), "
        f"{two_workers.cpu_s_per_1000_events:.3f} CPU-s per 1,000 events")
    return Results(started_at=started_at, options=vars(options), machine=machine(),
                   kafka_version=settings.kafka_version, backlog=backlog,
                   backlog_produce_s=produce_s, ceilings=ceilings, throughput=throughput,
                   write_cost=cost, preload=preloaded, latency=latency,
                   recovery=recovery, two_workers=two_workers)


def measure_two_workers(options: argparse.Namespace, base: Settings, backlog: Backlog
                        ) -> Throughput:
    """The same backlog drained by two workers sharing the four partitions, in a sandbox of
    its own (fresh topics, groups and state)."""
    sandbox = Sandbox.create(base)
    say(f"throughput: two workers, run {sandbox.token}, the same {backlog.events:,} events")
    workers = [WorkerProcess(replace(sandbox.settings, web_port=free_port(),
                                     data_dir=sandbox.workdir / f"state-{n}"),
                             sandbox.workdir / f"worker-{n}.log", poll_s=0.05,
                             start_timeout_s=300) for n in (1, 2)]
    try:
        return drain_backlog(workers, sandbox, backlog, timeout_s=options.drain_timeout,
                             produce_when_ready=True)
    finally:
        for worker in workers:
            worker.stop()
        sandbox.clean_up(keep_files=options.keep)


def measure_latency(options: argparse.Namespace, sandbox: Sandbox, backlog: Backlog,
                    sustained_events_per_s: float) -> tuple[Preload, list]:
    settings = sandbox.settings
    live_seed = options.seed + LIVE_SEED_OFFSET
    # Enough people that the measured part lasts every rate's full run.
    needed = sum(SHARES) * sustained_events_per_s * options.rate_seconds / (1 - PRELOAD_SHARE)
    people = max(options.people, math.ceil(1.1 * needed * options.people / backlog.events))
    say(f"latency: simulating the live population ({people:,} people, seed {live_seed})")
    stream = live_stream(simulate(sandbox.workdir / "live.jsonl", people=people,
                                  seed=live_seed), settings)
    cut = int(len(stream) * PRELOAD_SHARE)
    say(f"latency: preloading its first {cut:,} events")
    preloaded = preload(settings, stream[:cut], timeout_s=options.drain_timeout,
                        group=sandbox.name("preload"))
    say(f"  credited in {preloaded.seconds:.1f} s, {preloaded.corrections_per_1000:.1f} "
        "corrections per 1,000 credit sets (sent flat out)")
    if preloaded.incomplete:
        say(f"  {preloaded.incomplete} preloaded revenue events still without credits")
    latency = measure_rates(settings, stream[cut:], sustained_events_per_s, shares=SHARES,
                            seconds=options.rate_seconds,
                            warmup_s=WARMUP_SHARE * options.rate_seconds,
                            drain_timeout_s=120.0, group=sandbox.name("latency"))
    return preloaded, latency


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up below, unlike the default


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    base = Settings.from_env()
    if broker_missing(base):
        return 2
    started_at = datetime.now(UTC)
    sandbox = Sandbox.create(base)
    worker = WorkerProcess(sandbox.settings, sandbox.workdir / "worker.log", poll_s=0.05,
                           start_timeout_s=300)
    say(f"run {sandbox.token}: topics *-bench-{sandbox.token}, app id "
        f"{sandbox.settings.app_id}, files in {sandbox.workdir}")
    try:
        results = run(options, base, sandbox, worker, started_at)
    finally:
        worker.stop()
        if options.keep:
            say(f"kept topics and {sandbox.workdir}")
        else:
            say(f"deleted {len(sandbox.clean_up())} topics")
    path = results.write()
    say(f"results: {path}")
    print(results.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
