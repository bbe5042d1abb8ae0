"""MRR adds up by acquisition channel and segment, to the same minor unit on every surface:
the worker's Prometheus gauges, the Redis views, the API and the report built from profiles,
and all of them equal the batch computation's customers; the MRR bridge of the API equals the
report's and closes on the MRR; the API's retention equals the report's, figure for figure."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import defaultdict
from dataclasses import replace

import orjson
import redis

from personify.stack.worker_process import samples
from processors.aggregates import mrr_movements, sum_cells
from readmodels.report import CreditBook, ProfileBook, build_report
from readmodels.retention import as_dict
from readmodels.serving_views import PREFIX
from tests.chaos.test_kills import Expected, _simulate, send
from tests.integration.test_event_time_through_the_broker import read_profiles_until
from tests.integration.test_serving_views import redis_server  # noqa: F401 - a fixture


def _customers_mrr(profiles: dict) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for p in profiles.values():
        if p["conversion_ts"] is not None and p["mrr_minor"]:
            totals[p["acquisition_channel"], p["segment"]] += p["mrr_minor"]
    return dict(totals)


def _by(cells: dict[tuple[str, str], int], index: int) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for key, value in cells.items():
        totals[key[index]] += value
    return {k: v for k, v in totals.items() if v}


def _nonzero(cells: dict) -> dict:
    return {k: v for k, v in cells.items() if v}


def _http(worker, path: str):
    status, body = worker.get(path)
    assert status == 200, (path, status, body[:300])
    return body.decode()


def _from_metrics(worker) -> dict[tuple[str, str], int]:
    cells = {(labels["channel"], labels["segment"]): int(value)
             for name, labels, value in samples(worker.exposition())
             if name == "personify_mrr_minor_units"}
    return _nonzero(cells)


def _from_redis(url: str) -> dict[tuple[str, str], int]:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{PREFIX}:aggregates:*"))
    cells = sum_cells(orjson.loads(value)["all"] for value in client.mget(keys) if value)
    return _nonzero({(r.channel, r.segment): r.mrr_minor for r in mrr_movements(cells)})


def _from_api(worker) -> dict[tuple[str, str], int]:
    answer = json.loads(_http(worker, "/reports/channels?window=all"))
    return _nonzero({(r["channel"], r["segment"]): r["mrr_minor"] for r in answer["mrr"]})


def _bridge_from_api(worker, query: str = "") -> list[tuple]:
    answer = json.loads(_http(worker, f"/reports/mrr-bridge{query}"))
    return [(m["month"], m["opening_minor"], m["new_minor"], m["expansion_minor"],
             m["reactivation_minor"], m["contraction_minor"], m["churn_minor"],
             m["closing_minor"]) for m in answer["months"]]


def _retention_from_api(worker, query: str = "") -> dict:
    answer = json.loads(_http(worker, f"/reports/retention{query}"))
    assert answer.pop("reporting_currency") == "USD"
    return answer


def _as_served(retention) -> dict:
    return orjson.loads(orjson.dumps(as_dict(retention)))


def _bridge_rows(months) -> list[tuple]:
    return [(m.month, m.opening, m.new, m.expansion, m.reactivation, m.contraction, m.churn,
             m.closing) for m in months]


def profiles_through_the_pipeline(settings, expected: Expected) -> ProfileBook:
    """The profiles topic read until it equals the batch computation's, as a report's book."""
    profiles = read_profiles_until(settings, expected.profiles, timeout_s=180)
    assert profiles == expected.profiles
    book = ProfileBook()
    for profile in profiles.values():
        book.add(profile)
    return book


def test_mrr_by_channel_and_segment_is_the_same_minor_unit_on_every_surface(
        settings, start_worker, redis_server, tmp_path):  # noqa: F811
    settings = replace(settings, redis_url=redis_server.url)
    lines = _simulate(tmp_path, "log", 600, 31)
    expected = Expected(lines)
    truth = _customers_mrr(expected.profiles)
    assert len(_by(truth, 0)) >= 3 and sum(truth.values()) > 0  # a story worth checking
    worker = start_worker(settings)
    send(settings, lines).join()

    book = profiles_through_the_pipeline(settings, expected)
    report = build_report(book, CreditBook(), models=("first_touch",), currency="USD",
                          exponent=2)
    assert {r.channel: r.mrr_minor for r in report.channels if r.mrr_minor} == _by(truth, 0)
    assert {r.segment: r.mrr_minor for r in report.segments if r.mrr_minor} == _by(truth, 1)
    assert report.mrr_minor == sum(truth.values())

    bridge = _bridge_rows(report.mrr_bridge)
    assert bridge and bridge[-1][-1] == sum(truth.values())  # the bridge closes on the MRR
    retention = _as_served(report.retention)
    assert retention["cohorts"][0]["ages"][1]["customers"] > 0  # a cohort a month old at least
    channel = max(_by(truth, 0), key=_by(truth, 0).get)
    deadline, surfaces, expected_surfaces = time.monotonic() + 60, {}, {
        "metrics": truth, "redis": truth, "api": truth, "api bridge": bridge,
        "api retention": retention}
    while time.monotonic() < deadline:  # the views are published every 5 s
        surfaces = {"metrics": _from_metrics(worker), "redis": _from_redis(settings.redis_url),
                    "api": _from_api(worker), "api bridge": _bridge_from_api(worker),
                    "api retention": _retention_from_api(worker)}
        if surfaces == expected_surfaces:
            break
        time.sleep(1)
    assert surfaces == expected_surfaces
    assert all(value > 0 for value in truth.values())  # no channel goes negative
    closing = _bridge_from_api(worker, f"?channel={urllib.parse.quote(channel)}")[-1][-1]
    assert closing == _by(truth, 0)[channel]

    # as of a later clock the cohorts reach 3, 6 and 12 months: the same figures on both sides
    as_of = 1_769_904_000_000  # 2026-02-01T00:00Z: 2026-01 is the last complete month
    later = build_report(book, CreditBook(), models=("first_touch",), currency="USD",
                         exponent=2, as_of_ms=as_of).retention
    assert later.ranked_by == 12 and later.overall.at(12).retained.customers > 0
    assert _retention_from_api(worker, f"?as_of={as_of}") == _as_served(later)
