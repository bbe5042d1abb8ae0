"""`personify simulate`: write the population to a JSONL file or produce it live to Kafka."""

from __future__ import annotations

import argparse
import random
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from tqdm import tqdm

from personify.send import cli_client, produce_line
from personify.simulator.population import DEFAULT_START_MS, PersonTruth, SimulationConfig
from personify.simulator.stream import Totals, generate
from streams.topology import Settings

TRUTH_FORMAT = "personify-simulation-truth/1"


class TruthWriter:
    """Streams the truth file: one JSON object written piece by piece, so memory stays flat.

    `{"format", "config", "people": [...signed-up people...], "totals": {...}}`
    """

    def __init__(self, out: IO[bytes], config: dict[str, Any]) -> None:
        self._out = out
        self._first = True
        out.write(b'{"format":' + orjson.dumps(TRUTH_FORMAT) + b',"config":'
                  + orjson.dumps(config) + b',"people":[\n')

    def person(self, truth: PersonTruth) -> None:
        if truth.user_id is None:
            return
        self._out.write((b"" if self._first else b",\n") + orjson.dumps(truth.to_dict()))
        self._first = False

    def finish(self, totals: Totals) -> None:
        self._out.write(b'\n],"totals":' + orjson.dumps(totals.to_dict()) + b"}\n")


class Pacer:
    """Holds a stream to `rate` events per second of wall time (checked every `every` events)."""

    def __init__(self, rate: float, every: int = 100) -> None:
        self._interval = 1.0 / rate
        self._every = every
        self._sent = 0
        self._started = time.monotonic()

    def tick(self) -> None:
        self._sent += 1
        if self._sent % self._every == 0:
            ahead = self._started + self._sent * self._interval - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def _start_ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_start = datetime.fromtimestamp(DEFAULT_START_MS / 1000, UTC).date().isoformat()
    parser.add_argument("--people", type=int, default=1_000, help="people to simulate")
    parser.add_argument("--days", type=int, default=90, help="simulated days (default 90)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    parser.add_argument("--start", default=default_start,
                        help=f"first simulated instant, ISO 8601, UTC unless zoned "
                             f"(default {default_start})")
    parser.add_argument("--malformed-share", type=float, default=0.01,
                        help="share of defective events: malformed or duplicate (default 0.01)")
    parser.add_argument("--multi-device-share", type=float, default=0.25,
                        help="share of people who sign up that also browse on a second "
                             "device (default 0.25)")
    parser.add_argument("--shared-device-share", type=float, default=0.03,
                        help="share of two-person households sharing one device "
                             "(default 0.03)")
    parser.add_argument("--lookback-days", type=int, default=90,
                        help="lookback of the truth's acquisition channel (default 90)")
    parser.add_argument("--max-pending", type=int, default=200_000,
                        help="events held in memory before spilling sorted runs to disk")
    parser.add_argument("--out", type=Path, help="write JSON lines here instead of to Kafka")
    parser.add_argument("--rate", type=float,
                        help="live mode: events per second (default: as fast as possible)")
    parser.add_argument("--truth", type=Path, help="write the ground truth (JSON) here")
    parser.add_argument("--spend", action="store_true",
                        help="also emit each paid channel's daily marketing spend")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, settings: Settings) -> SimulationConfig:
    return SimulationConfig(
        people=args.people, days=args.days, start_ms=_start_ms(args.start),
        malformed_share=args.malformed_share, multi_device_share=args.multi_device_share,
        shared_device_share=args.shared_device_share, lookback_days=args.lookback_days,
        max_pending=args.max_pending, topics=settings.topics, spend=args.spend)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.rate is not None and (args.out is not None or args.rate <= 0):
        raise ValueError("--rate is for live mode (no --out) and must be positive")
    config = config_from_args(args, settings)
    described = {**{k: v for k, v in asdict(config).items() if k not in ("spill_dir", "topics")},
                 "seed": args.seed}
    totals = Totals()
    started = time.monotonic()
    with ExitStack() as stack:
        truth_file = stack.enter_context(args.truth.open("wb")) if args.truth else None
        truth = TruthWriter(truth_file, described) if truth_file else None
        bar = stack.enter_context(tqdm(total=config.people, unit="people",
                                       disable=args.no_progress, desc="simulate"))

        def on_person(person: PersonTruth) -> None:
            totals.count_person(person)
            bar.update()
            if truth is not None:
                truth.person(person)

        events = generate(config, random.Random(args.seed), on_person=on_person)
        failed = _write(events, args, settings, totals)
        if truth is not None:
            truth.finish(totals)
    seconds = time.monotonic() - started
    count = sum(t["events"] for t in totals.topics.values())
    print(f"{count} events ({sum(totals.defects.values())} defective) for {totals.people} people "
          f"({totals.signups} signups, {totals.customers} customers) in {seconds:.1f} s "
          f"({count / max(seconds, 1e-9):,.0f} events/s)"
          + (f"; {failed} delivery failures" if failed else ""))
    return 1 if failed else 0


def _write(events: Any, args: argparse.Namespace, settings: Settings, totals: Totals) -> int:
    """Write or produce every event, counting it; returns the number of failed deliveries."""
    if args.out is not None:
        with args.out.open("wb") as out:
            for event in events:
                totals.count_event(event)
                out.write(orjson.dumps(event.to_line()) + b"\n")
        return 0
    pacer = Pacer(args.rate) if args.rate else None
    with cli_client(settings) as client:
        for event in events:
            totals.count_event(event)
            produce_line(client, event.to_line())
            if pacer is not None:
                pacer.tick()
    return client.failed
