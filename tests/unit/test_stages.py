"""The device and person stages in memory, as the worker runs them (no broker, no Faust)."""

from __future__ import annotations

import asyncio
from base64 import b64decode
from collections import defaultdict
from pathlib import Path
from typing import get_args

import orjson
import pytest

from processors.aggregates import AggregateConfig, fold_many, merge
from processors.config import PipelineConfig
from processors.identity import (
    Accepted,
    Claim,
    DeviceOutput,
    Duplicate,
    LinkRefused,
    SignupSeen,
    Stitched,
    TouchDropped,
)
from processors.messages import decode_batch, encode, encode_batch
from processors.person import (
    Converted,
    Corrected,
    DeadLetter,
    DuplicateBilling,
    LateEvent,
    MrrMovement,
    PersonOutput,
    Processed,
    ProfileChanged,
)
from processors.reference import (
    billing_message,
    current_credits,
    latest_profiles,
    run_in_event_time,
)
from processors.revenue import Credit, credit_record
from processors.spend import SpendOutput
from readmodels.serving_views import credit_writes, profile_writes
from schemas.contract import headers_for
from schemas.events import Payment, Traits
from streams.stages.devices import DeviceStage
from streams.stages.persons import PersonStage
from streams.stages.spend import SpendStage
from tests.unit.stage_harness import (
    NAMES,
    Message,
    Record,
    Stages,
    Table,
    device_batches,
    in_partitions,
    simulated,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = PipelineConfig()
AGGREGATES = AggregateConfig.for_models(CONFIG.attribution.models)


def nonzero(cells: dict) -> dict:
    return {key: value for key, value in cells.items() if value}


def resolved(records) -> dict:
    """Credit id → its current credit, without how it came to be (the stream may correct)."""
    return {credit_id: {k: v for k, v in record.items() if k not in ("op", "revision", "cause")}
            for credit_id, record in current_credits(records).items()}


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda seed: f"seed {seed}")
def workload(request):
    inputs, valid, now_ms = simulated(people=400, seed=request.param)
    batch = run_in_event_time(valid, CONFIG, now_ms)
    return inputs, now_ms, batch


@pytest.mark.parametrize("partitions", [1, 4])
def test_the_stages_end_with_the_batch_computations_credits_profiles_and_aggregates(
        workload, partitions):
    inputs, now_ms, batch = workload
    stages = Stages(partitions, CONFIG, now_ms)

    asyncio.run(stages.race(device_batches(inputs, partitions, CONFIG, now_ms), seed=partitions))

    credits = stages.sends.values(NAMES.credits)
    assert resolved(credits) == resolved(credit_record(c) for c in batch.credits())
    assert len(resolved(credits)) > 20
    assert latest_profiles(stages.sends.values(NAMES.profiles)) == batch.profiles()
    folded = merge(stages.persons.aggregates.keep_only(set(range(partitions)))).all_time
    assert nonzero(folded) == nonzero(fold_many(None, batch.outputs, AGGREGATES).all_time)
    assert all(sent.headers == headers_for(orjson.loads(sent.value)["schema"])
               for sent in stages.sends.records
               if sent.topic in (NAMES.credits, NAMES.profiles, NAMES.dead_letters))


def test_every_decision_the_core_can_make_has_an_effect():
    assert set(DeviceStage.EFFECTS) == set(get_args(DeviceOutput))
    assert set(PersonStage.EFFECTS) == set(get_args(PersonOutput))
    assert set(SpendStage.EFFECTS) == set(get_args(SpendOutput))


PAYMENT = Payment("pay-1", 1_700_000_000_000, "u1", 4200, "EUR")
DEVICE_COUNTS = [
    (Duplicate("e1", "page_view", replay=True), "personify_replayed_events_total",
     {"topic": NAMES.page_views}, 1),
    (Duplicate("e1", "signup", replay=False), "personify_duplicate_events_total",
     {"topic": NAMES.signups}, 1),
    (Accepted("page_view"), "personify_events_processed_total", {"topic": NAMES.page_views}, 1),
    (LinkRefused("device_cap", "e1"), "personify_identity_link_refusals_total",
     {"reason": "device_cap"}, 1),
    (TouchDropped("no_person", "e1"), "personify_touches_dropped_total",
     {"reason": "no_person"}, 1),
    (Stitched(3), "personify_touches_stitched_total", {}, 3),
]
PERSON_COUNTS = [
    (Processed(NAMES.billing, 1_700_000_000_000), "personify_events_processed_total",
     {"topic": NAMES.billing}, 1),
    (Processed(NAMES.billing, 1_700_000_000_000), "personify_processing_latency_seconds_count",
     {"topic": NAMES.billing}, 1),
    (DuplicateBilling(NAMES.billing, replay=True), "personify_replayed_events_total",
     {"topic": NAMES.billing}, 1),
    (DuplicateBilling(NAMES.billing, replay=False), "personify_duplicate_events_total",
     {"topic": NAMES.billing}, 1),
    (LinkRefused("person_cap", "a1"), "personify_identity_link_refusals_total",
     {"reason": "person_cap"}, 1),
    (Corrected("linear", "late_touch"), "personify_credit_corrections_total",
     {"model": "linear", "cause": "late_touch"}, 1),
    (LateEvent("corrected"), "personify_late_events_total", {"outcome": "corrected"}, 1),
    (MrrMovement("u1", "e1", "s1", "new", 1, 900, 900, "USD", "smb", "direct"),
     "personify_mrr_movements_total", {"kind": "new"}, 1),
    (MrrMovement("u1", "e1", "s1", "new", 1, -900, 0, "USD", "smb", "direct", sign=-1),
     "personify_mrr_movements_total", {"kind": "new"}, 0),
]


def apply(stage, key, output) -> None:
    async def run():
        sending = stage.EFFECTS[type(output)](stage, key, output)
        if sending is not None:
            await sending
        if isinstance(stage, PersonStage):
            await stage.send_profiles([])
        else:
            await stage.to_persons.send([])
    asyncio.run(run())


COUNTED = [pytest.param(stage, *case, id=f"{stage} {type(case[0]).__name__} {case[1]}")
           for stage, cases in (("devices", DEVICE_COUNTS), ("persons", PERSON_COUNTS))
           for case in cases]
SENT = {Claim, SignupSeen, Credit, ProfileChanged, DeadLetter}
"""Decisions with effects of their own, tested one by one below."""


def test_each_effect_is_tested():
    counted = {type(case[0]) for case in DEVICE_COUNTS + PERSON_COUNTS}
    assert counted | SENT | {Converted} == set(get_args(DeviceOutput) + get_args(PersonOutput))


@pytest.mark.parametrize(("stage", "output", "metric", "labels", "added"), COUNTED)
def test_a_counted_decision_adds_to_its_metric_and_sends_nothing(stage, output, metric, labels,
                                                                  added):
    stages = Stages(1, CONFIG, 1_700_000_000_000)
    apply(getattr(stages, stage), "k1", output)
    assert stages.metric(metric, **labels) == added
    assert stages.sends.records == [] and stages.views.queued == []


def test_claims_and_signups_go_to_their_persons_partition_of_the_person_stage():
    stages = Stages(4, CONFIG, 0)
    claim = Claim("u1", "a1", None, ())
    signup = SignupSeen("u2", "a1", 5, "s1", Traits(industry="Software"))
    for output in (claim, signup):
        apply(stages.devices, "a1", output)
    sent = stages.sends.on(NAMES.person_events)
    outbox = stages.devices.to_persons
    assert [(s.partition, s.value) for s in sent] == [
        (outbox.partition_of(key), encode_batch([(key, encode(o))])[0])
        for key, o in sorted([("u1", claim), ("u2", signup)],
                             key=lambda pair: outbox.partition_of(pair[0]))]


def test_a_credit_is_sent_with_its_headers_counted_once_and_queued_for_the_views(workload):
    _, now_ms, batch = workload
    credit = batch.credits()[0]
    stages = Stages(1, CONFIG, now_ms)
    apply(stages.persons, credit.person_id, credit)
    record = credit_record(credit)
    [sent] = stages.sends.records
    assert (sent.topic, sent.key, orjson.loads(sent.value), sent.headers) == (
        NAMES.credits, credit.person_id.encode(), record, headers_for(record["schema"]))
    assert stages.metric("personify_credits_emitted_total", model=credit.model,
                         kind=credit.kind) == 1
    assert stages.views.queued == credit_writes(record)
    retract = Credit(**{**{f: getattr(credit, f) for f in Credit.__dataclass_fields__},
                        "op": "retract"})
    apply(stages.persons, credit.person_id, retract)
    assert stages.metric("personify_credits_emitted_total", model=credit.model,
                         kind=credit.kind) == 1
    assert len(stages.sends.records) == 2 and stages.views.queued == credit_writes(record)


def test_only_the_newest_profile_of_a_take_is_sent_and_queued(workload):
    _, now_ms, batch = workload
    first, newest = list(batch.profiles().values())[:2]
    stages = Stages(1, CONFIG, now_ms)

    async def run():
        for record in (first, newest):
            stages.persons.keep_newest_profile("p1", ProfileChanged(record))
        await stages.persons.send_profiles([])
    asyncio.run(run())

    [sent] = stages.sends.records
    assert (sent.topic, sent.key, orjson.loads(sent.value), sent.headers) == (
        NAMES.profiles, b"p1", newest, headers_for(newest["schema"]))
    assert stages.views.queued == profile_writes(newest)


def test_a_dead_letter_decision_sends_the_original_bytes_with_its_source_and_counts_it():
    stages = Stages(1, CONFIG, 0)
    sourced = billing_message(PAYMENT)
    apply(stages.persons, "u1", DeadLetter("unknown_currency", "say what to fix", sourced))
    [sent] = stages.sends.records
    letter = orjson.loads(sent.value)
    assert (sent.topic, sent.key, sent.headers) == (
        NAMES.dead_letters, b"u1", headers_for(letter["schema"]))
    assert (letter["reason"], letter["topic"], b64decode(letter["original_b64"]).decode()) == (
        "unknown_currency", NAMES.billing, sourced.source.raw)
    assert stages.metric("personify_dead_letters_total", topic=NAMES.billing,
                         reason="unknown_currency") == 1


def test_a_converted_decision_is_only_measured_by_the_aggregates():
    stages = Stages(1, CONFIG, 0)
    apply(stages.persons, "u1", Converted("u1", 5, "direct", "smb", None))
    assert stages.sends.records == [] and stages.views.queued == []


@pytest.mark.parametrize("stage", ["devices", "persons"])
def test_a_record_that_is_no_batch_is_dead_lettered_and_the_stream_goes_on(stage):
    stages = Stages(1, CONFIG, 1_700_000_000_000)
    topic = NAMES.device_events if stage == "devices" else NAMES.person_events
    item = encode(billing_message(PAYMENT))
    records = [Record(None, value, Message(topic, 0, offset)) for offset, value in
               enumerate([b"not json", b'{"k":"claim"}', encode_batch([("u1", item)])[0]])]

    asyncio.run(getattr(stages, stage).take(in_partitions, records))

    letters = stages.sends.values(NAMES.dead_letters)
    assert [(d["reason"], d["topic"], d["offset"], b64decode(d["original_b64"]))
            for d in letters] == [("processing_error", topic, 0, b"not json"),
                                  ("processing_error", topic, 1, b'{"k":"claim"}')]
    assert stages.metric("personify_dead_letters_total", topic=topic,
                         reason="processing_error") == 2
    if stage == "devices":
        assert len(stages.sends.on(NAMES.person_events)) == 1
    else:
        assert stages.metric("personify_events_processed_total", topic=NAMES.billing) == 1


def test_a_spend_line_is_counted_once_whether_read_again_or_sent_twice():
    stages = Stages(1, CONFIG, 1_800_000_000_000)
    line = (ROOT / "schemas" / "examples" / "spend.v1.paid_search_day.json").read_bytes()
    read = [Record(b"k", line, Message(NAMES.spend, 0, offset)) for offset in (0, 0, 1)]
    read.append(Record(b"k", b"{}", Message(NAMES.spend, 0, 2)))

    asyncio.run(stages.spend.take(in_partitions, read))

    assert [stages.metric(f"personify_{name}_total", topic=NAMES.spend)
            for name in ("events_consumed", "events_processed", "replayed_events",
                         "duplicate_events")] == [4, 1, 1, 1]
    [letter] = stages.sends.values(NAMES.dead_letters)
    assert (letter["topic"], letter["offset"]) == (NAMES.spend, 2)
    assert sum(stages.spend.aggregates.state(0).all_time.values()) > 0


def items(sent: list) -> list:
    """The (key, item) pairs of batch records, whatever the batches."""
    return [pair for record in sent for pair in decode_batch(orjson.loads(record.value))]


def read_in_takes(stage, log: list[Record], sizes: list[int]) -> None:
    async def run():
        start = 0
        for size in sizes:
            await stage.take(in_partitions, log[start:start + size])
            start += size
    asyncio.run(run())


def copied(tables: dict[str, Table]) -> dict[str, Table]:
    """The tables as a worker restores them from their changelogs."""
    restored: dict[str, Table] = defaultdict(Table)
    for name, table in tables.items():
        restored[name].update(table)
    return restored


@pytest.mark.parametrize("stage", ["devices", "persons"])
def test_a_crash_after_delivering_reads_again_and_sends_the_very_same_records(workload, stage):
    inputs, now_ms, _ = workload
    upstream = Stages(1, CONFIG, now_ms)
    log = device_batches(inputs, 1, CONFIG, now_ms, per_take=7)[0]
    if stage == "persons":
        read_in_takes(upstream.devices, log, [1] * len(log))
        log = upstream.sends.log(NAMES.person_events)[0]
    out = NAMES.person_events if stage == "devices" else NAMES.credits
    committed, crashed_at = len(log) // 3, 2 * len(log) // 3
    worker = Stages(1, CONFIG, now_ms)
    read_in_takes(getattr(worker, stage), log, [1] * committed)
    restored = copied(worker.tables)
    sent_before = len(worker.sends.on(out))
    read_in_takes(getattr(worker, stage), log[committed:], [crashed_at - committed])
    lost_take = worker.sends.on(out)[sent_before:]

    takeover = Stages(1, CONFIG, now_ms, tables=restored)
    read_in_takes(getattr(takeover, stage), log[committed:], [2, 5, len(log)])

    again = takeover.sends.on(out)
    if stage == "devices":
        assert items(again)[:len(items(lost_take))] == items(lost_take)
    else:
        assert [s.value for s in again][:len(lost_take)] == [s.value for s in lost_take]
    assert lost_take
