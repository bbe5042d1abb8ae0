"""The spend stage (`count_spend`): marketing-spend-v1 → validated, counted once, folded into
the aggregates.

count_spend (spend partitions) ─► spend aggregates (by partition, hour, channel) ─► /metrics,
                                  dead letters                                      Redis, API

A stage of its own, beside the person pipeline: spend needs no identity, so it reads its input
topic directly and changes nothing upstream. Its state is keyed `{partition}|{campaign key}`
and written for the message's partition, so a changelog record is always where the partition's
owner restores it, whatever partitioner the producer used.

Exactly once, as the person stage (streams/stages/persons.py): the aggregate records are
written before the campaigns' states, and a record read again after a crash is folded only if
past the aggregate's head offset (streams/aggregate_store.py); a line sent twice is a duplicate
of the campaign's state (processors/spend.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import ClassVar

from processors.spend import SpendConfig, SpendDuplicate, SpendRecorded, SpendState, step_spend
from processors.validation import Rejection, ValidationConfig, decode
from streams.aggregate_store import AggregateStore, fold_then_store
from streams.dead_letters import DeadLetters, Record, wall_ms
from streams.metrics import Metrics
from streams.stages.records import Effect, InPartitions, delivered
from streams.state_cache import CachedStates


def partition_of(key: str) -> int:
    return int(key.split("|", 1)[0])


class SpendStage:
    def __init__(self, states: CachedStates[SpendState], aggregates: AggregateStore,
                 dead_letters: DeadLetters, metrics: Metrics, config: SpendConfig,
                 validation: ValidationConfig, clock: Callable[[], int] = wall_ms) -> None:
        self.states, self.aggregates = states, aggregates
        self._dead_letters, self._metrics, self._clock = dead_letters, metrics, clock
        self._config, self._validation = config, validation

    async def take(self, in_partitions: InPartitions, records: list[Record]) -> None:
        sent: list[Awaitable] = []
        changed: dict[str, SpendState] = {}
        folds: defaultdict[int, list[tuple[int, list]]] = defaultdict(list)
        for record in records:
            msg, raw = record.message, record.value or b""
            self._metrics.events_consumed.labels(msg.topic).inc()
            try:
                spend = decode(raw, "spend", now_ms=self._clock(), config=self._validation)
                if isinstance(spend, Rejection):
                    sent.append(await self._dead_letters.send(
                        record.key, raw, msg.topic, msg.partition, msg.offset, spend.reason,
                        spend.message))
                    continue
                key = f"{msg.partition}|{spend.key}"
                before = changed.get(key) or self.states.get(key)
                origin = f"{msg.topic}/{msg.partition}/{msg.offset}"
                state, outputs = step_spend(before, [(spend, origin)], self._config)
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                sent.append(await self._dead_letters.failure(record, exc))
                continue
            if state is not before:
                changed[key] = state
            for output in outputs:
                self.EFFECTS[type(output)](self, msg.topic, output)
            folds[msg.partition].append(
                (msg.offset, [o for o in outputs if isinstance(o, SpendRecorded)]))
        await delivered(sent)
        await fold_then_store(self.aggregates, folds, self.states, changed,
                              in_partitions(records))

    def forget(self) -> None:
        self.states.forget()

    def count_duplicate(self, topic: str, output: SpendDuplicate) -> None:
        counter = self._metrics.replayed if output.replay else self._metrics.duplicate_events
        counter.labels(topic).inc()

    def count_recorded(self, topic: str, output: SpendRecorded) -> None:
        self._metrics.events_processed.labels(topic).inc()

    EFFECTS: ClassVar[dict[type, Effect]] = {
        SpendDuplicate: count_duplicate,
        SpendRecorded: count_recorded,  # and folded into the aggregates
    }
    """What each decision of `step_spend` does."""
