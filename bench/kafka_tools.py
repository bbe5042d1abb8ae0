"""Kafka's own command-line tools, run from the jars the local stack already uses.

ProducerPerformance and ConsumerPerformance measure what the broker and a JVM client do on
this machine; LogDirsCommand reports each partition's size on disk.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from personify.stack.kafka import KafkaBroker
from streams.topology import Settings

_TOOLS = "org.apache.kafka.tools"
_PRODUCER_SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency")


def _run_tool(settings: Settings, tool: str, *args: str, timeout_s: float = 600) -> str:
    """Run `org.apache.kafka.tools.<tool>` and return its standard output (logging: warnings)."""
    command = ["java", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
               "-cp", f"{KafkaBroker(settings).libs}/*", f"{_TOOLS}.{tool}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


@dataclass(frozen=True, slots=True)
class ToolRate:
    records: int
    records_per_s: float
    mb_per_s: float


def producer_performance(settings: Settings, topic: str, records: int,
                         payload_file: Path) -> ToolRate:
    """Produce `records` values drawn from `payload_file` as fast as possible, acks=all, with
    batches as large as librdkafka's default (the JVM client's 16 KiB would cap it lower)."""
    output = _run_tool(
        settings, "ProducerPerformance", "--topic", topic, "--num-records", str(records),
        "--throughput", "-1", "--payload-file", str(payload_file), "--producer-props",
        f"bootstrap.servers={settings.kafka_bootstrap}", "acks=all", "linger.ms=5",
        "batch.size=1000000")
    summaries = _PRODUCER_SUMMARY.findall(output)
    if not summaries:
        raise RuntimeError(f"no summary in ProducerPerformance's output:\n{output[-2000:]}")
    sent, per_s, mb_per_s, _ = summaries[-1]
    return ToolRate(int(sent), float(per_s), float(mb_per_s))


def consumer_performance(settings: Settings, topic: str, records: int, group: str) -> ToolRate:
    """Read `records` messages of `topic` from its start; the fetch rate leaves out the time
    spent joining the group."""
    output = _run_tool(
        settings, "ConsumerPerformance", "--bootstrap-server", settings.kafka_bootstrap,
        "--topic", topic, "--messages", str(records), "--group", group, "--timeout", "30000")
    rows = [line.split(",") for line in output.splitlines() if line.count(",") >= 9]
    header, values = [h.strip() for h in rows[0]], [v.strip() for v in rows[-1]]
    row = dict(zip(header, values, strict=True))
    return ToolRate(int(row["data.consumed.in.nMsg"]), float(row["fetch.nMsg.sec"]),
                    float(row["fetch.MB.sec"]))


def disk_bytes(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Per topic, the size of its partitions' log segments on the broker's disk."""
    output = _run_tool(settings, "LogDirsCommand", "--bootstrap-server",
                       settings.kafka_bootstrap, "--describe", "--topic-list", ",".join(topics))
    report = orjson.loads(next(line for line in output.splitlines() if line.startswith("{")))
    sizes = dict.fromkeys(topics, 0)
    for broker in report["brokers"]:
        for log_dir in broker["logDirs"]:
            for partition in log_dir["partitions"]:
                topic = partition["partition"].rsplit("-", 1)[0]
                if topic in sizes:
                    sizes[topic] += partition["size"]
    return sizes
