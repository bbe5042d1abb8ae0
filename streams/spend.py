"""The spend stage: marketing-spend-v1 → validated, counted once, folded into the aggregates.

count_spend (spend partitions) ─► spend aggregates (by partition, hour, channel) ─► /metrics,
                                  dead letters                                      Redis, API

A stage of its own, beside the person pipeline: spend needs no identity, so it reads its input
topic directly and changes nothing upstream. Its state is keyed `{partition}|{campaign key}`
and written for the message's partition, so a changelog record is always where the partition's
owner restores it, whatever partitioner the producer used.

Exactly once, as the credit stage (streams/agents.py): the aggregate records are written
before the campaigns' states, and a record read again after a crash is folded only if past the
aggregate's head offset (streams/aggregate_store.py); a line sent twice is a duplicate of the
campaign's state (processors/spend.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable
from functools import partial

import faust

from processors.spend import SpendDuplicate, SpendRecorded, SpendState, step_spend
from processors.validation import Rejection, decode
from streams.agents import delivered
from streams.aggregate_store import fold_then_store
from streams.context import Pipeline
from streams.dead_letters import send_dead_letter, wall_ms
from streams.operations import Takes, committed_offset
from streams.state_cache import CachedStates, TakenPartitions

SPEND_PER_TAKE = 1000
TAKE_WITHIN_S = 0.05
CAMPAIGNS_CACHED = 10_000
log = logging.getLogger(__name__)


def _partition_of(key: str) -> int:
    return int(key.split("|", 1)[0])


def register_spend(app: faust.App, pipeline: Pipeline) -> None:
    metrics, config = pipeline.metrics, pipeline.config.spend
    validation = pipeline.config.validation
    campaigns = CachedStates(pipeline.tables.spend_facts, SpendState.from_dict, CAMPAIGNS_CACHED,
                             _partition_of)
    dead_letter = partial(send_dead_letter, pipeline)
    takes = Takes(pipeline.metrics.take_seconds, committed=partial(committed_offset, app))

    @app.agent(pipeline.topics.spend, name="count_spend")
    async def count_spend(stream: faust.StreamT) -> None:
        await takes.run(stream, SPEND_PER_TAKE, TAKE_WITHIN_S, partial(count_all, stream))

    async def count_all(stream: faust.StreamT, events: list[faust.EventT]) -> None:
        sent: list[Awaitable] = []
        changed: dict[str, SpendState] = {}
        folds: defaultdict[int, list[tuple[int, list]]] = defaultdict(list)
        for event in events:
            msg, raw = event.message, event.value or b""
            metrics.events_consumed.labels(msg.topic).inc()
            try:
                spend = decode(raw, "spend", now_ms=wall_ms(), config=validation)
                if isinstance(spend, Rejection):
                    sent.append(await dead_letter(event.key, raw, msg.topic, msg.partition,
                                                  msg.offset, spend.reason, spend.message))
                    continue
                key = f"{msg.partition}|{spend.key}"
                before = changed.get(key) or campaigns.get(key)
                origin = f"{msg.topic}/{msg.partition}/{msg.offset}"
                state, outputs = step_spend(before, [(spend, origin)], config)
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                log.error("spend %s[%s]@%s failed", msg.topic, msg.partition, msg.offset,
                          exc_info=exc)
                sent.append(await dead_letter(event.key, raw, msg.topic, msg.partition,
                                              msg.offset, "processing_error",
                                              f"{type(exc).__name__}: {exc}"))
                continue
            if state is not before:
                changed[key] = state
            for output in outputs:
                if isinstance(output, SpendDuplicate):
                    (metrics.replayed if output.replay else metrics.duplicate_events).labels(
                        msg.topic).inc()
                else:
                    metrics.events_processed.labels(msg.topic).inc()
            folds[msg.partition].append(
                (msg.offset, [o for o in outputs if isinstance(o, SpendRecorded)]))
        await delivered(sent)
        await fold_then_store(pipeline.spend_aggregates, folds, campaigns, changed,
                              TakenPartitions(stream, events))

    @app.on_partitions_revoked.connect
    async def forget_spend_state(app: faust.App, revoked, **kwargs) -> None:
        await takes.revoked(revoked)
        campaigns.forget()

    @app.on_partitions_assigned.connect
    async def own_spend_partitions(app: faust.App, assigned, **kwargs) -> None:
        takes.assigned(assigned)
