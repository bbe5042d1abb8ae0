import argparse
import json
import random
from collections import defaultdict
from fractions import Fraction
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from personify.simulator import SimulationConfig, Totals, add_arguments, generate, run
from personify.simulator.ordering import TimeOrderedMerge
from personify.simulator.population import (
    APP_SITE,
    CHANNEL_PROFILES,
    DEFECTS,
    landing_page,
    rfc3339,
)
from personify.simulator.stream import decode_event, encode_event
from processors.channels import default_channel_config
from processors.config import PipelineConfig
from processors.money import default_currency_table
from processors.segments import SegmentConfig, segment_of
from processors.touchpoints import detect_touch
from processors.validation import Rejection, decode
from schemas.events import PageView, Payment, Signup, Traits
from streams.topology import Settings

CONTRACT_KIND = {"page-views-v1": "page_view", "signups-v1": "signup", "billing-v1": "billing"}
VALIDATION = PipelineConfig().validation
DAY_MS = 86_400_000


def simulate(people, seed=7, **knobs):
    config = SimulationConfig(people=people, **knobs)
    truths = []
    events = list(generate(config, random.Random(seed), on_person=truths.append))
    return config, events, truths


@pytest.fixture(scope="module")
def population():
    return simulate(3_000)


def decoded(event, config):
    raw = event.raw.encode() if event.raw is not None else json.dumps(event.value).encode()
    return decode(raw, CONTRACT_KIND[event.topic], now_ms=config.end_ms, config=VALIDATION)


def test_the_same_seed_gives_the_same_stream_and_another_seed_another():
    first, second, other = (simulate(300, seed)[1] for seed in (1, 1, 2))
    assert [e.to_line() for e in first] == [e.to_line() for e in second]
    assert [e.to_line() for e in first] != [e.to_line() for e in other]


def test_the_stream_is_in_time_order(population):
    _, events, _ = population
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:], strict=False))


def test_every_well_formed_event_passes_the_pipelines_validation(population):
    config, events, _ = population
    rejected = [(e, decoded(e, config)) for e in events if e.raw is None]
    assert [pair for pair in rejected if isinstance(pair[1], Rejection)] == []


def test_every_malformed_event_is_rejected_except_the_refund_only_state_can_refuse(population):
    config, events, _ = population
    malformed = [e for e in events if e.raw is not None]
    assert {e.defect for e in malformed} >= {"bad_json", "missing_field", "wrong_type"}
    accepted = [e for e in malformed if not isinstance(decoded(e, config), Rejection)]
    assert {e.defect for e in accepted} <= {"unknown_refund"}


def test_defects_make_up_the_configured_share_and_are_counted_per_topic():
    _, events, _ = simulate(4_000, malformed_share=0.05)
    totals = Totals()
    for event in events:
        totals.count_event(event)
    defective = sum(c["malformed"] + c["duplicates"] for c in totals.topics.values())
    assert defective == sum(e.defect is not None for e in events)
    assert 0.04 < defective / len(events) < 0.06
    assert set(totals.defects) <= {kind for kinds in DEFECTS.values() for kind in kinds}


def test_no_defects_when_the_share_is_zero():
    _, events, _ = simulate(500, malformed_share=0.0)
    assert all(e.defect is None for e in events)


def test_duplicates_repeat_an_earlier_event_later_in_the_stream(population):
    _, events, _ = population
    first_seen = {}
    for event in events:
        if event.defect == "duplicate":
            assert first_seen[event.value["event_id"]] < event.ts
        elif event.value is not None:
            first_seen.setdefault(event.value["event_id"], event.ts)


@pytest.mark.parametrize("channel", sorted(CHANNEL_PROFILES))
def test_each_channel_is_written_so_the_ga4_rules_recover_it(channel):
    rng = random.Random(channel)
    for _ in range(40):
        url, referrer = landing_page(channel, rng)
        view = PageView("e", 0, "anon", None, url, referrer)
        touch = detect_touch(view, None, default_channel_config())
        assert touch.channel == channel, (url, referrer)


@pytest.mark.parametrize("channel", ["Direct", "Email"])
def test_logged_in_visits_to_the_app_are_recovered_too(channel):
    url, referrer = landing_page(channel, random.Random(3), APP_SITE)
    assert url.startswith(APP_SITE)
    view = PageView("e", 0, "anon", "user-1", url, referrer)
    assert detect_touch(view, None, default_channel_config()).channel == channel


def test_internal_navigation_carries_no_campaign_data(population):
    _, events, _ = population
    views = [e.value for e in events if e.topic == "page-views-v1" and e.raw is None]
    navigation = [view["url"] for view in views
                  if urlsplit(view["referrer"] or "").hostname == urlsplit(view["url"]).hostname]
    assert navigation
    assert all(urlsplit(url).query == "" for url in navigation)


def acquisition_channels_recomputed(events, config):
    """The journey rule of DESIGN.md over the stream, with the pipeline's touch detection;
    devices are owned by whoever links them (the unambiguous case)."""
    channel_config = default_channel_config()
    previous_view, owner_of_device = {}, {}
    touches, first_payment = defaultdict(list), {}
    device_touches = defaultdict(list)
    for event in events:
        if event.raw is not None or event.defect == "duplicate":
            continue
        item = decoded(event, config)
        if isinstance(item, Signup):
            owner_of_device.setdefault(item.anonymous_id, item.user_id)
        elif isinstance(item, Payment):
            first_payment.setdefault(item.user_id, item.ts)
        elif isinstance(item, PageView):
            if item.user_id:
                owner_of_device.setdefault(item.anonymous_id, item.user_id)
            touch = detect_touch(item, previous_view.get(item.anonymous_id), channel_config)
            previous_view[item.anonymous_id] = item.ts
            if touch is not None:
                device_touches[item.anonymous_id].append((touch.ts, item.user_id, touch.channel))
    for device, device_list in device_touches.items():
        for ts, user_id, channel in device_list:
            owner = user_id or owner_of_device.get(device)
            if owner is not None:
                touches[owner].append((ts, channel))
    lookback = config.lookback_days * DAY_MS
    channels = {}
    for user_id, conversion in first_payment.items():
        journey = sorted(t for t in touches[user_id] if conversion - lookback <= t[0] <= conversion)
        channels[user_id] = journey[0][1] if journey else "Unattributed"
    return channels


def test_truth_acquisition_channel_is_what_the_design_rules_give_on_the_stream(population):
    config, events, truths = population
    recomputed = acquisition_channels_recomputed(events, config)
    clear = {t.user_id: t.acquisition_channel for t in truths
             if t.conversion_ts is not None and not t.ambiguous}
    assert len(clear) > 50
    assert {user: recomputed[user] for user in clear} == clear


def test_the_population_has_multi_device_shared_device_and_never_converting_people(population):
    _, _, truths = population
    assert any(t.devices > 1 and t.conversion_ts for t in truths)
    assert any(t.ambiguous and t.user_id for t in truths)
    assert sum(t.user_id is None for t in truths) > 0.8 * len(truths)
    assert any(t.user_id and t.conversion_ts is None for t in truths)


def test_truth_segment_follows_company_size_and_each_person_keeps_one_currency(population):
    _, events, truths = population
    for truth in (t for t in truths if t.user_id):
        assert segment_of(Traits(company_size=truth.company_size), SegmentConfig()) == truth.segment
    currencies = defaultdict(set)
    for event in events:
        if event.topic == "billing-v1" and event.raw is None:
            currencies[event.value["user_id"]].add(event.value["currency"])
    assert all(len(codes) == 1 for codes in currencies.values())
    assert set().union(*currencies.values()) >= {"USD", "EUR", "GBP", "JPY"}


def test_refunds_never_exceed_nor_precede_their_payment(population):
    _, events, _ = population
    payments, refunded = {}, defaultdict(int)
    for event in (e for e in events if e.topic == "billing-v1" and e.defect is None):
        value = event.value
        if value["kind"] == "payment":
            payments[value["event_id"]] = value
        elif value["kind"] == "refund":
            paid = payments[value["refund_of"]]
            assert (paid["user_id"], paid["currency"]) == (value["user_id"], value["currency"])
            assert paid["ts"] < value["ts"]
            refunded[value["refund_of"]] += value["amount_minor"]
            assert refunded[value["refund_of"]] <= paid["amount_minor"]
    assert refunded


def test_truth_revenue_is_payments_minus_refunds_of_the_stream(population):
    _, events, truths = population
    revenue = defaultdict(int)
    for event in (e for e in events if e.topic == "billing-v1" and e.defect is None):
        sign = {"payment": 1, "refund": -1}.get(event.value["kind"], 0)
        revenue[event.value["user_id"]] += sign * event.value.get("amount_minor", 0)
    assert {t.user_id: t.revenue_minor for t in truths if t.revenue_minor} == {
        user: amount for user, amount in revenue.items() if amount}


def test_subscription_changes_cover_new_expansion_contraction_churn_and_reactivation(
    large_population,
):
    _, events = large_population
    last_mrr, moves = {}, set()
    for event in (e for e in events if e.topic == "billing-v1" and e.defect is None):
        if event.value["kind"] == "subscription_change":
            before = last_mrr.get(event.value["subscription_id"])
            after = event.value["mrr_minor"]
            moves.add("new" if before is None else "churn" if after == 0
                      else "reactivation" if before == 0 else "expansion" if after > before
                      else "contraction")
            last_mrr[event.value["subscription_id"]] = after
    assert moves == {"new", "expansion", "contraction", "churn", "reactivation"}


def test_revenue_follows_a_power_law():
    table = default_currency_table()
    _, _, truths = simulate(2_000, seed=11)
    usd = sorted((Fraction(t.revenue_minor, 10 ** table[t.currency].exponent)
                  * table[t.currency].usd_per_unit for t in truths if t.conversion_ts),
                 reverse=True)
    top = usd[: len(usd) // 5]
    assert sum(top) / sum(usd) >= Fraction(55, 100)


def test_signup_times_are_rfc3339_with_milliseconds():
    assert rfc3339(1_735_689_600_123) == "2025-01-01T00:00:00.123Z"


@pytest.fixture(scope="module")
def large_population():
    """20,000 people through a merge that may hold only 2,000 events in memory."""
    merge = TimeOrderedMerge(2_000, encode_event, decode_event)
    config = SimulationConfig(people=20_000, malformed_share=0.0)
    return merge, list(generate(config, random.Random(5), merge=merge))


def test_memory_stays_flat_by_spilling_sorted_runs(large_population):
    merge, events = large_population
    assert merge.most_pending <= 2_001
    assert merge.runs_written >= 5
    assert len(events) > 50 * 2_000
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:], strict=False))


def test_spilling_does_not_change_the_stream():
    config = SimulationConfig(people=800)
    merge = TimeOrderedMerge(150, encode_event, decode_event)
    spilled = list(generate(config, random.Random(3), merge=merge))
    assert merge.runs_written > 0
    held = list(generate(config, random.Random(3)))
    assert spilled == held


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 30)), max_size=60),
       st.integers(1, 8))
def test_the_merge_releases_everything_in_order_whatever_it_spills(batches, max_pending):
    released, watermark = [], 0
    with TimeOrderedMerge(max_pending, lambda item: item, tuple) as merge:
        for step, (advance, spread) in enumerate(batches):
            watermark += advance
            for offset in range(spread % 4):
                merge.push(watermark + offset * spread, (watermark + offset * spread, step))
            released += merge.release(watermark)
        released += merge.drain()
    expected = sorted(released)
    assert released == expected
    assert len(released) == sum(spread % 4 for _, spread in batches)


def test_simulate_command_writes_events_and_a_streamed_truth_file(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.json"
    args = parser.parse_args(["--people", "400", "--seed", "3", "--out", str(out),
                              "--truth", str(truth), "--no-progress"])
    assert run(args, Settings()) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    document = json.loads(truth.read_text())
    totals = document["totals"]
    assert totals["events"] == len(lines)
    assert totals["people"] == 400
    assert document["config"]["seed"] == 3
    assert len(document["people"]) == totals["signups"]
    assert {p["user_id"] for p in document["people"]} == {
        line["value"]["user_id"] for line in lines if line["topic"] == "signups-v1"
        and "value" in line}
    by_topic = defaultdict(int)
    for line in lines:
        by_topic[line["topic"]] += "raw" in line
    assert {topic: counts["malformed"] for topic, counts in totals["topics"].items()} == by_topic


def test_simulate_command_produces_live_to_kafka(monkeypatch):
    from personify import send

    monkeypatch.setattr(send, "CLI_PRODUCER_CONFIG", {"test.mock.num.brokers": 1, "log_level": 0})
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--people", "100", "--rate", "1000000", "--no-progress"])
    assert run(args, Settings()) == 0


def test_rate_is_only_for_live_mode(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--rate", "10", "--out", str(tmp_path / "x.jsonl")])
    with pytest.raises(ValueError, match="live mode"):
        run(args, Settings())
