"""The device stage (`stitch_identities`): each device's touches stitched to the persons who
use it; billing passes through, keyed by its user, to the person stage.

A device is stepped once per record, never over records merged: a take is read again after a
crash with other boundaries, and only stepping the same records from the same state sends the
very same claims again. (A claim is sent when a person's share changes; merged differently,
the re-read could skip a claim the lost take had sent, and that person would keep it.)
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import ClassVar

from processors import messages
from processors.config import PipelineConfig
from processors.identity import (
    Accepted,
    Claim,
    DeviceInput,
    DeviceState,
    Duplicate,
    LinkRefused,
    SignupSeen,
    Stitched,
    TouchDropped,
    step_device,
)
from processors.touchpoints import detect_touch
from schemas.events import PageView, Signup
from streams.dead_letters import DeadLetters, Record
from streams.metrics import Metrics
from streams.stages.records import Effect, InPartitions, Outbox, batches, delivered
from streams.state_cache import CachedStates, TableWrites
from streams.topology import Topics


class DeviceStage:
    def __init__(self, to_persons: Outbox, states: CachedStates[DeviceState],
                 dead_letters: DeadLetters, metrics: Metrics, config: PipelineConfig,
                 names: Topics) -> None:
        self.to_persons, self.states = to_persons, states
        self._dead_letters, self._metrics, self._config = dead_letters, metrics, config
        self._names = names
        self._detect = partial(detect_touch, config=config.channels)

    async def take(self, in_partitions: InPartitions, records: list[Record]) -> None:
        """Each record's devices stepped in turn, but delivered once per take: under load a
        take holds many records, so the round trips to the broker do not grow with them."""
        sent: list[Awaitable] = []
        changed: dict[str, DeviceState] = {}
        for record, by_key in await batches(records, self._dead_letters, sent):
            for key, items in by_key.items():
                try:
                    before = changed.get(key) or self.states.get(key)
                    state = self.step(key, before, [messages.decode(i) for i in items])
                    if state is not None:
                        changed[key] = state
                except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                    sent.append(await self._dead_letters.failure(record, exc, key, items))
        await self.to_persons.send(sent)
        await delivered(sent)
        writes = TableWrites()
        self.states.put_all(changed, writes)
        await writes.apply(in_partitions(records))

    def step(self, key: str, before: DeviceState | None, sourced: list) -> DeviceState | None:
        """One device's events of a record (or a user's billing, passed on); the new state, or
        None when there is nothing to write."""
        inputs = []
        for item in sourced:
            if isinstance(item.event, (PageView, Signup)):
                inputs.append(DeviceInput(item.event, item.source.origin))
            else:
                self.to_persons.add(key, messages.encode(item))
        if not inputs:
            return None
        state, outputs = step_device(before, inputs, anonymous_id=key, detect_touch=self._detect,
                                     session_timeout_ms=self._config.channels.session_timeout_ms,
                                     config=self._config.identity)
        for output in outputs:
            self.EFFECTS[type(output)](self, key, output)
        return None if state is before else state

    def forget(self) -> None:
        self.states.forget()

    def forward_to_person(self, key: str, output: Claim | SignupSeen) -> None:
        self.to_persons.add(output.person_id, messages.encode(output))

    def count_duplicate(self, key: str, output: Duplicate) -> None:
        counter = self._metrics.replayed if output.replay else self._metrics.duplicate_events
        counter.labels(self._input_topic(output.kind)).inc()

    def count_accepted(self, key: str, output: Accepted) -> None:
        self._metrics.events_processed.labels(self._input_topic(output.kind)).inc()

    def _input_topic(self, kind: str) -> str:
        return self._names.page_views if kind == "page_view" else self._names.signups

    def count_link_refused(self, key: str, output: LinkRefused) -> None:
        self._metrics.link_refusals.labels(output.reason).inc()

    def count_touch_dropped(self, key: str, output: TouchDropped) -> None:
        self._metrics.touches_dropped.labels(output.reason).inc()

    def count_stitched(self, key: str, output: Stitched) -> None:
        self._metrics.touches_stitched.inc(output.count)

    EFFECTS: ClassVar[dict[type, Effect]] = {
        Claim: forward_to_person,
        SignupSeen: forward_to_person,
        Duplicate: count_duplicate,
        Accepted: count_accepted,
        LinkRefused: count_link_refused,
        TouchDropped: count_touch_dropped,
        Stitched: count_stitched,
    }
    """What each decision of `step_device` does: sent on to a person, or counted."""
