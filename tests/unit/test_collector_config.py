import asyncio
import gc
import tomllib
from pathlib import Path

import pytest
from aiohttp import web

from personify.collector.command import freeze_start_up_objects
from personify.collector.config import load_collector_config, parse_collector_config
from processors.config import PipelineConfig
from streams.topology import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "collector.example.toml"
VALIDATION = PipelineConfig().validation


def test_the_example_file_parses_and_keeps_billing_away_from_the_browser():
    config = load_collector_config(str(EXAMPLE), VALIDATION)
    sources = {source.name: source for source in config.sources}
    assert sources["web"].sends == {"page_view", "signup"}
    assert sources["backend"].sends == {"page_view", "signup", "billing", "spend"}
    assert config.origin_allowed("https://www.example.com")
    assert not config.origin_allowed("https://evil.example")
    assert config.rules.track_events["Payment Received"] == "payment"
    assert config.rules.track_events["Order Completed"] == "payment"


def test_no_file_means_no_source():
    assert load_collector_config("", VALIDATION).sources == ()


def test_the_collector_binds_to_loopback_on_its_own_port():
    settings = Settings.from_env({})
    assert (settings.collector_host, settings.collector_port) == ("127.0.0.1", 16080)
    assert settings.collector_port not in (settings.web_port, settings.prometheus_port,
                                           settings.kafka_controller_port, 19092, 16379)


@pytest.mark.parametrize(("document", "words"), [
    ({"sorces": {}}, "unknown keys"),
    ({"sources": {"web": {"write_key": ""}}}, "write_key"),
    ({"sources": {"web": {"write_key": "a:b"}}}, "write_key"),
    ({"sources": {"web": {"write_key": "k", "sends": ["billing", "invoices"]}}}, "sends"),
    ({"sources": {"a": {"write_key": "k"}, "b": {"write_key": "k"}}}, "share a write key"),
    ({"track_events": {"Paid": "money"}}, "track_events"),
    ({"max_body_kib": 0}, "max_body_kib"),
    ({"allowed_origins": "https://x.com"}, "allowed_origins"),
    ({"version": 2}, "version"),
])
def test_mistakes_in_the_file_are_reported_not_ignored(document, words):
    with pytest.raises(ValueError, match=words):
        parse_collector_config(document, VALIDATION)


def test_limits_come_from_the_file():
    document = tomllib.loads("max_body_kib = 64\ndelivery_timeout_ms = 800\nbody_timeout_s = 2\n")
    config = parse_collector_config(document, VALIDATION)
    assert (config.max_body_bytes, config.delivery_timeout_ms, config.body_timeout_s) == (
        65536, 800, 2.0)


def test_the_collectors_start_up_objects_are_left_out_of_garbage_collection():
    assert gc.get_freeze_count() == 0
    try:
        asyncio.run(freeze_start_up_objects(web.Application()))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
