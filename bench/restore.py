"""Cold start with and without the fast restorer (streams/restore.py), on one drained workload:
`python -m bench.restore [--people N]`. Faust's own recovery is measured by a worker whose
restorer is switched off (`personify worker --no-fast-restore`); each figure is spawn to
/ready, data directory deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from bench.broker import end_offsets
from bench.progress import say
from bench.sandbox import Sandbox, broker_missing
from bench.workload import Backlog, produce_backlog, simulate
from personify.stack.processes import StackError
from personify.stack.worker_process import WorkerProcess
from streams.restore import restore_stores
from streams.topology import Settings


def drain(worker: WorkerProcess, sandbox: Sandbox, backlog: Backlog, timeout_s: float) -> None:
    """Run `worker` until every credit record of `backlog` is out (asks the broker only: a
    loaded machine makes the worker's HTTP answers late)."""
    worker.start()
    started, topic = time.monotonic(), sandbox.settings.topics.credits
    while (credits := end_offsets(sandbox.settings.kafka_bootstrap, [topic])[topic]) \
            < backlog.expected_credits:
        if time.monotonic() - started > timeout_s:
            raise StackError(f"{credits:,} of {backlog.expected_credits:,} credit records "
                               f"after {timeout_s:.0f} s:\n{worker.log_tail()}")
        time.sleep(1.0)
    say(f"  drained: {credits:,} credit records in {time.monotonic() - started:.0f} s")


def cold_start(worker: WorkerProcess, sandbox: Sandbox) -> float:
    shutil.rmtree(sandbox.settings.data_dir, ignore_errors=True)
    try:
        return worker.start()
    finally:
        worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restore")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the files (worker logs)")
    options = parser.parse_args(argv)
    base = Settings.from_env()
    if broker_missing(base):
        return 2
    sandbox = Sandbox.create(base)
    settings = sandbox.settings
    worker = WorkerProcess(settings, sandbox.workdir / "worker.log")
    faust_only = WorkerProcess(settings, sandbox.workdir / "faust-only.log",
                               options=("--no-fast-restore",))
    try:
        say(f"simulating {options.people:,} people, producing, draining with one worker")
        backlog = Backlog.of(simulate(sandbox.workdir / "backlog.jsonl", people=options.people,
                                      seed=options.seed))
        produce_backlog(backlog, settings)
        drain(worker, sandbox, backlog, timeout_s=1800)
        worker.stop()
        records = sum(end_offsets(settings.kafka_bootstrap, sandbox.changelog_topics()).values())
        say(f"{records:,} changelog records")
        shutil.rmtree(settings.data_dir)
        restored = restore_stores(settings)
        say(f"restorer alone: {restored.records:,} records in {restored.seconds:.2f} s "
            f"({restored.per_second:,.0f} records/s)")
        after = cold_start(worker, sandbox)
        say(f"cold start with the restorer: ready in {after:.1f} s ({records / after:,.0f} "
            "records/s)")
        worker.start()
        worker.stop()
        warm = worker.start()
        worker.stop()
        say(f"warm start after a clean stop (the floor): ready in {warm:.1f} s")
        before = cold_start(faust_only, sandbox)
        say(f"cold start, Faust's recovery only: ready in {before:.1f} s "
            f"({records / before:,.0f} records/s)")
    finally:
        worker.stop()
        faust_only.stop()
        say(f"deleted {len(sandbox.clean_up(keep_files=options.keep))} topics"
            + (f"; files kept in {sandbox.workdir}" if options.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
