from __future__ import annotations

import random
import time
from collections import Counter
from fractions import Fraction

import orjson
import pytest

from personify.simulator.population import SimulationConfig
from personify.simulator.spend import PAID_CHANNELS, spend_events
from personify.simulator.stream import Totals, generate
from processors.config import PipelineConfig
from processors.reference import run_in_event_time
from processors.spend import SpendBook
from processors.validation import Rejection, decode
from schemas.contract import INPUT_SCHEMAS
from schemas.events import Spend

KIND_OF_SCHEMA = {schema: kind for kind, schema in INPUT_SCHEMAS.items()}


@pytest.fixture(scope="module")
def run():
    config = SimulationConfig(people=10_000, days=60, shared_device_share=0.1, spend=True)
    people, totals = [], Totals()

    def on_person(person):
        people.append(person)
        totals.count_person(person)

    events = list(generate(config, random.Random(11), on_person=on_person))
    pipeline_config, now = PipelineConfig(), time.time_ns() // 1_000_000
    book, product = SpendBook(pipeline_config.spend), []
    for event in events:
        totals.count_event(event)
        if event.value is None or event.defect is not None:
            continue
        decoded = decode(orjson.dumps(event.value), KIND_OF_SCHEMA[event.value["schema"]],
                         now_ms=now, config=pipeline_config.validation)
        assert not isinstance(decoded, Rejection), decoded
        if isinstance(decoded, Spend):
            book.add_event(decoded)
        else:
            product.append(decoded)
    profiles = run_in_event_time(product, pipeline_config, now).profiles()
    return config, events, people, totals.to_dict()["spend"], book, profiles


def test_every_paid_channel_spends_every_day_on_the_days_start(run):
    config, events, *_ = run
    lines = [e for e in events if e.value and e.value["schema"] == "spend/1"]
    assert len(lines) == config.days * len(PAID_CHANNELS)
    assert all(e.ts % 86_400_000 == 0 for e in lines)
    assert lines == list(spend_events(config))


def test_spend_lands_on_the_channel_it_was_bought_for_to_the_minor_unit(run):
    _, _, _, truth, book, _ = run
    assert book.by_channel() == {channel: t["spend_minor"] for channel, t in truth.items()}


def test_the_pipelines_cac_per_channel_is_the_simulators_truth(run):
    """Exact: the unambiguous customers' acquisition channels equal the truth's; a customer
    on a shared device is counted where the identity rules put them (the truth is ambiguous
    about whose visits those were)."""
    _, _, people, truth, book, profiles = run
    ours = {p["person_id"]: p["acquisition_channel"] for p in profiles.values()
            if p["conversion_ts"] is not None}
    customers = [t for t in people if t.conversion_ts is not None]
    assert [t.user_id for t in customers if not t.ambiguous
            and ours[t.user_id] != t.acquisition_channel] == []
    truth_customers = Counter(ours[t.user_id] if t.ambiguous else t.acquisition_channel
                              for t in customers)
    pipeline_customers = Counter(ours.values())
    assert pipeline_customers == truth_customers
    spend = book.by_channel()
    assert sum(t["customers"] > 0 for t in truth.values()) >= 3  # a story worth checking
    for channel, t in truth.items():
        if not pipeline_customers[channel]:
            assert not truth_customers[channel]
            continue
        cac = Fraction(spend[channel], pipeline_customers[channel])
        assert cac == Fraction(t["spend_minor"], truth_customers[channel])
        if t["customers"] == truth_customers[channel]:  # no shared device moved anyone
            assert cac == Fraction(t["spend_minor"], t["customers"])
