"""The results of a run: one JSON document, and a short markdown table of the headline figures."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench.ceilings import Ceilings
from bench.latency import Preload, RateLatency
from bench.recovery import Recovery
from bench.throughput import Throughput, WriteCost
from bench.workload import Backlog

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                     .splitlines() if line.startswith("MemTotal:"))
    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(memory_kb / 2**20, 1),
        "kernel": platform.release(), "python": sys.version.split()[0],
        **{package: metadata.version(package)
           for package in ("faust-streaming", "aiokafka", "confluent-kafka", "rocksdict")},
    }


@dataclass(frozen=True)
class Results:
    started_at: datetime
    options: dict[str, Any]
    machine: dict[str, Any]
    kafka_version: str
    backlog: Backlog
    backlog_produce_s: float
    ceilings: Ceilings
    throughput: Throughput
    write_cost: WriteCost
    preload: Preload | None
    """The live population's first part, sent flat out (None with --no-latency)."""
    latency: list[RateLatency]
    recovery: Recovery
    two_workers: Throughput
    """The same backlog drained by two workers on the four partitions."""

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["started_at"] = self.started_at.isoformat()
        document["backlog"] = {**document["backlog"], "path": self.backlog.path.name,
                               "expected_credits": self.backlog.expected_credits}
        document["ratios"] = self.ratios()
        return document

    def ratios(self) -> dict[str, float]:
        """Sustained worker throughput as a share of each ceiling; the worker's CPU per event
        as a multiple of the same rules' in a plain loop."""
        sustained = self.throughput.events_per_s
        return {
            "of_python_loop": sustained / self.ceilings.python_loop.events_per_s,
            "cpu_vs_same_rules": self.throughput.cpu_s_per_1000_events
            / self.ceilings.same_rules.cpu_s_per_1000_events,
            "of_producer_performance": sustained
            / self.ceilings.producer_performance.records_per_s,
            "of_consumer_performance": sustained
            / self.ceilings.consumer_performance.records_per_s,
        }

    def write(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
        return path

    def table(self) -> str:
        t, w, c, r = self.throughput, self.write_cost, self.ceilings, self.recovery
        ratios = self.ratios()
        disk = ", ".join(f"{group} {size:,.0f} B" for group, size in
                         w.disk_bytes_per_event.items())
        rows = [
            ("workload", f"{self.backlog.events:,} events, {self.backlog.revenue_events:,} "
                         f"revenue events → {self.backlog.expected_credits:,} credit records "
                         f"({self.options['people']:,} people, seed {self.options['seed']})"),
            ("sustained throughput", f"**{t.events_per_s:,.0f} events/s** "
                                     f"({t.events_measured:,} events in {t.seconds:.1f} s; "
                                     f"input read at {t.read_events_per_s:,.0f} events/s, "
                                     f"done at {t.last_input_consumed_s:.1f} s)"),
            ("CPU per 1,000 events", f"{t.cpu_s_per_1000_events:.3f} CPU-s "
                                     f"({t.cpu_utilisation:.2f} cores busy)"),
            ("peak RSS", f"{t.peak_rss_mb:,.0f} MB"),
            ("two workers, four partitions",
             f"{self.two_workers.events_per_s:,.0f} events/s "
             f"({self.two_workers.events_per_s / t.events_per_s:.2f}× one worker), "
             f"{self.two_workers.cpu_s_per_1000_events:.3f} CPU-s per 1,000 events"),
            ("changelog per input event", f"{w.changelog_records_per_event:.2f} records, "
                                          f"{w.changelog_payload_bytes_per_event:,.0f} B"),
            ("broker disk per input event", disk),
            *((("preload, sent flat out",
                f"{p.events:,} events credited in {p.seconds:.1f} s · "
                f"{p.corrections_per_1000:.1f} corrections per 1,000 credit sets"
                + (f" · {p.incomplete} revenue events incomplete" if p.incomplete else "")),)
              if (p := self.preload) else ()),
            *((f"latency at {lat.share_of_sustained:.0%} ({lat.offered_events_per_s:,.0f} "
               "events/s)",
               f"p50 {lat.p50_ms:,.0f} ms · p99 {lat.p99_ms:,.0f} ms · p99.9 "
               f"{lat.p999_ms:,.0f} ms (n={lat.samples}"
               + (f", {lat.incomplete} incomplete" if lat.incomplete else "")
               + f") · {lat.corrections_per_1000:.1f} corrections per 1,000 credit sets")
              for lat in self.latency),
            ("ceiling: Python consume → produce", f"{c.python_loop.events_per_s:,.0f} events/s "
                                                  f"(Personify {ratios['of_python_loop']:.1%})"),
            ("ceiling: the same rules in a plain loop",
             f"{c.same_rules.events_per_s:,.0f} events/s, "
             f"{c.same_rules.cpu_s_per_1000_events:.3f} CPU-s per 1,000 events (Personify's "
             f"CPU per event {ratios['cpu_vs_same_rules']:.1f}×)"),
            ("ceiling: ProducerPerformance", f"{c.producer_performance.records_per_s:,.0f} "
                                             f"records/s (Personify "
                                             f"{ratios['of_producer_performance']:.1%})"),
            ("ceiling: ConsumerPerformance", f"{c.consumer_performance.records_per_s:,.0f} "
                                             f"records/s (Personify "
                                             f"{ratios['of_consumer_performance']:.1%})"),
            ("start to /ready, empty state", f"{t.start_to_ready_s:.1f} s"),
            ("recovery, warm after kill -9", f"{r.warm_after_kill_s:.1f} s"),
            ("recovery, warm after a clean stop", f"{r.warm_after_stop_s:.1f} s"),
            ("recovery, cold (state rebuilt)", f"{r.cold_s:.1f} s "
                                               f"({r.changelog_records:,} records, "
                                               f"{r.cold_records_restored_per_s:,.0f} records/s)"),
        ]
        lines = ["| figure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines)
