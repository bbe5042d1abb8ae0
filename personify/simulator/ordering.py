"""Time order with flat memory: a watermark merge that spills to sorted runs on disk.

People are generated in arrival order and every event of a person happens at or after their
arrival, so once the generator has reached arrival time `t`, no event earlier than `t` can
still come: those are released. Events further ahead wait in a heap; when more than
`max_pending` wait, the heap is written out as one sorted run file and emptied. Releasing
merges the heap with the heads of the runs, so memory is bounded by `max_pending` plus one
event per run, whatever the population size, and the output order is the same with or
without spilling: (ts, push order).
"""

from __future__ import annotations

import heapq
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import orjson

Item = TypeVar("Item")


class TimeOrderedMerge(Generic[Item]):
    """Push `(ts, item)` in any order above the watermark; `release(t)` yields items before `t`.

    `encode` turns an item into a JSON-able value and `decode` back, for the run files.
    Use as a context manager: the run files live in a temporary directory removed on exit.
    """

    def __init__(
        self,
        max_pending: int,
        encode: Callable[[Item], Any],
        decode: Callable[[Any], Item],
        spill_dir: Path | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.runs_written = 0
        self.most_pending = 0
        self._encode = encode
        self._decode = decode
        self._spill_dir = spill_dir
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._pending: list[tuple[int, int, Item]] = []
        self._run_heads: list[tuple[int, int, int, Item]] = []
        self._runs: list[IO[bytes]] = []
        self._sequence = 0

    @property
    def pending(self) -> int:
        """Items waiting in memory (the heap), not counting run heads."""
        return len(self._pending)

    def push(self, ts: int, item: Item) -> None:
        heapq.heappush(self._pending, (ts, self._sequence, item))
        self._sequence += 1
        self.most_pending = max(self.most_pending, len(self._pending))
        if len(self._pending) > self.max_pending:
            self._spill()

    def release(self, before_ts: float) -> Iterator[Item]:
        """Yield, in (ts, push order), every held item with `ts < before_ts`."""
        while True:
            from_heap = self._pending[0] if self._pending else None
            from_run = self._run_heads[0] if self._run_heads else None
            if from_run is not None and (from_heap is None or from_run[:2] < from_heap[:2]):
                if from_run[0] >= before_ts:
                    return
                heapq.heappop(self._run_heads)
                self._advance(from_run[2])
                yield from_run[3]
            elif from_heap is not None and from_heap[0] < before_ts:
                heapq.heappop(self._pending)
                yield from_heap[2]
            else:
                return

    def drain(self) -> Iterator[Item]:
        """Everything still held, in order."""
        return self.release(math.inf)

    def __enter__(self) -> TimeOrderedMerge[Item]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for run in self._runs:
            run.close()
        if self._directory is not None:
            self._directory.cleanup()

    def _spill(self) -> None:
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(
                prefix="personify-sim-", dir=self._spill_dir
            )
        path = Path(self._directory.name) / f"run-{self.runs_written:05d}.jsonl"
        entries = sorted(self._pending)
        with path.open("wb") as out:
            for ts, sequence, item in entries:
                out.write(orjson.dumps([ts, sequence, self._encode(item)]) + b"\n")
        self._pending = []
        run = path.open("rb")
        self._runs.append(run)
        self.runs_written += 1
        self._advance(len(self._runs) - 1)

    def _advance(self, run_index: int) -> None:
        line = self._runs[run_index].readline()
        if not line:
            self._runs[run_index].close()
            return
        ts, sequence, encoded = orjson.loads(line)
        heapq.heappush(self._run_heads, (ts, sequence, run_index, self._decode(encoded)))
