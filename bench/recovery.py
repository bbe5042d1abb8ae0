"""Recovery: how long a worker takes to be ready again, with and without its disk.

Warm after a crash: SIGKILL, then a restart on the same data directory (RocksDB state kept;
only the changelog tail after its last flush is replayed). The killed member never left its
consumer group, so the restart also waits for the group to give up on it (the session
timeout). Warm after a clean stop: SIGTERM, restart; the same state, no dead member. Cold: the
data directory deleted, so every table is rebuilt from its changelog before /ready.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bench.broker import end_offsets
from bench.progress import say
from bench.sandbox import Sandbox
from personify.stack.worker_process import WorkerProcess


@dataclass(frozen=True, slots=True)
class Recovery:
    warm_after_kill_s: float
    warm_after_stop_s: float
    cold_s: float
    changelog_records: int
    cold_records_restored_per_s: float
    """Changelog records over the whole cold start, start-up floor included."""


def measure_recovery(worker: WorkerProcess, sandbox: Sandbox) -> Recovery:
    """Crash `worker` (which has processed its input), restart it warm, warm again after a
    clean stop, then cold; each figure is spawn to /ready."""
    say(f"recovery: kill -9 worker {worker.pid}, restart on its data directory")
    worker.kill()
    after_kill = worker.start()
    say(f"  warm after kill -9: ready in {after_kill:.1f} s")
    worker.stop()
    after_stop = worker.start()
    say(f"  warm after a clean stop: ready in {after_stop:.1f} s")
    worker.stop()
    shutil.rmtree(sandbox.settings.data_dir)
    records = sum(end_offsets(sandbox.settings.kafka_bootstrap,
                              sandbox.changelog_topics()).values())
    say(f"recovery: data directory deleted, restart rebuilds {records:,} changelog records")
    cold = worker.start()
    say(f"  cold: ready in {cold:.1f} s ({records / cold:,.0f} records/s)")
    return Recovery(after_kill, after_stop, cold, records, records / cold)
