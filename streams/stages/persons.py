"""The person stage (`credit_revenue`): each person's journey, payments and profile stepped,
the decisions sent (credits, profiles, dead letters), counted and queued for the serving
views; the aggregates fold each record's outputs once (streams/aggregate_store.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import ClassVar

import orjson

from processors import messages
from processors.config import PipelineConfig
from processors.identity import LinkRefused
from processors.person import (
    Converted,
    Corrected,
    DeadLetter,
    DuplicateBilling,
    LateEvent,
    MrrMovement,
    PersonState,
    Processed,
    ProfileChanged,
    step_person,
)
from processors.revenue import Credit, credit_record
from readmodels.serving_views import ViewWrite, credit_writes, profile_writes
from schemas.contract import headers_for
from streams.aggregate_store import AggregateStore, fold_then_store
from streams.dead_letters import DeadLetters, Record, Send, wall_ms
from streams.metrics import Metrics
from streams.stages.records import Effect, InPartitions, batches, delivered
from streams.state_cache import CachedStates


class PersonStage:
    def __init__(self, states: CachedStates[PersonState], aggregates: AggregateStore, *,
                 send_credit: Send, send_profile: Send,
                 queue_views: Callable[[list[ViewWrite]], None],
                 dead_letters: DeadLetters, metrics: Metrics, config: PipelineConfig,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.states, self.aggregates = states, aggregates
        self._send_credit, self._send_profile = send_credit, send_profile
        self._queue_views, self._dead_letters = queue_views, dead_letters
        self._metrics, self._config, self._clock = metrics, config, clock
        self.profiles: dict[str, dict] = {}
        """The newest profile of each person stepped in the take: sent once, at its end."""

    async def take(self, in_partitions: InPartitions, records: list[Record]) -> None:
        """Each record's persons stepped in turn, but delivered once per take."""
        sent: list[Awaitable] = []
        changed: dict[str, PersonState] = {}
        folds: defaultdict[int, list[tuple[int, list]]] = defaultdict(list)
        for record, by_key in await batches(records, self._dead_letters, sent):
            measured: list = []
            for key, items in by_key.items():
                try:
                    before = changed.get(key) or self.states.get(key)
                    state, outputs = step_person(
                        before, [messages.decode(i) for i in items], person_id=key,
                        config=self._config, now_ms=self._clock())
                    for output in outputs:
                        sending = self.EFFECTS[type(output)](self, key, output)
                        if sending is not None:
                            sent.append(await sending)
                    measured.extend(outputs)
                    if state is not before:
                        changed[key] = state
                except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                    sent.append(await self._dead_letters.failure(record, exc, key, items))
            folds[record.message.partition].append((record.message.offset, measured))
        await self.send_profiles(sent)
        await delivered(sent)
        await fold_then_store(self.aggregates, folds, self.states, changed,
                              in_partitions(records))

    async def send_profiles(self, sent: list[Awaitable]) -> None:
        profiles, self.profiles = self.profiles, {}
        for key, record in profiles.items():
            sent.append(await self._send_profile(key=key.encode(), value=orjson.dumps(record),
                                                 headers=headers_for(record["schema"])))
            self._queue_views(profile_writes(record))

    def forget(self) -> None:
        self.states.forget()

    def send_credit(self, key: str, output: Credit) -> Awaitable:
        if output.op == "assert" and output.revision == 1:  # a revenue event credited
            self._metrics.credits_emitted.labels(output.model, output.kind).inc()
        record = credit_record(output)
        if output.op == "assert":
            self._queue_views(credit_writes(record))
        return self._send_credit(key=key.encode(), value=orjson.dumps(record),
                                 headers=headers_for(record["schema"]))

    def keep_newest_profile(self, key: str, output: ProfileChanged) -> None:
        self.profiles[key] = output.record

    def dead_letter(self, key: str, output: DeadLetter) -> Awaitable:
        source = output.message_source.source
        return self._dead_letters.send(key.encode(), source.raw.encode(), source.topic,
                                       source.partition, source.offset, output.reason,
                                       output.message)

    def count_processed(self, key: str, output: Processed) -> None:
        self._metrics.events_processed.labels(output.source_topic).inc()
        self._metrics.processing_latency.labels(output.source_topic).observe(
            max(0.0, (self._clock() - output.event_ts) / 1000))

    def count_duplicate(self, key: str, output: DuplicateBilling) -> None:
        counter = self._metrics.replayed if output.replay else self._metrics.duplicate_events
        counter.labels(output.source_topic).inc()

    def count_link_refused(self, key: str, output: LinkRefused) -> None:
        self._metrics.link_refusals.labels(output.reason).inc()

    def count_correction(self, key: str, output: Corrected) -> None:
        self._metrics.credit_corrections.labels(output.model, output.cause).inc()

    def count_late_event(self, key: str, output: LateEvent) -> None:
        self._metrics.late_events.labels(output.outcome).inc()

    def count_mrr_movement(self, key: str, output: MrrMovement) -> None:
        if output.sign > 0:  # movements made, not those taken back
            self._metrics.mrr_movements.labels(output.kind).inc()

    def measured_by_the_aggregates(self, key: str, output: Converted) -> None:
        pass

    EFFECTS: ClassVar[dict[type, Effect]] = {
        Credit: send_credit,
        ProfileChanged: keep_newest_profile,
        DeadLetter: dead_letter,
        Processed: count_processed,
        DuplicateBilling: count_duplicate,
        LinkRefused: count_link_refused,
        Corrected: count_correction,
        LateEvent: count_late_event,
        MrrMovement: count_mrr_movement,
        Converted: measured_by_the_aggregates,
    }
    """What each decision of `step_person` does: sent, counted or queued for the views (every
    output is also folded into the aggregates)."""
