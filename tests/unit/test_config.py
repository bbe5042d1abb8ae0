import tomllib
from pathlib import Path

import pytest

from processors.config import PipelineConfig, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "personify.example.toml"


def test_the_example_config_parses_into_the_rules_it_states():
    config = parse_config(tomllib.loads(EXAMPLE.read_text()))
    assert config.channels.own_domains == ("example.com",)
    assert config.channels.custom_rules[0].channel == "Partners"
    assert config.identity.max_people_per_device == 5
    assert config.attribution.lookback_ms == 90 * 86_400_000
    assert config.validation.max_payload_bytes == 64 * 1024
    assert "guest" in config.validation.junk_block_list


def test_an_empty_document_gives_the_design_defaults():
    assert parse_config({}).attribution.models == PipelineConfig().attribution.models


@pytest.mark.parametrize("document", [{"channel": {}}, {"identity": {"max_people": 3}},
                                      {"version": 2}])
def test_a_typo_in_the_config_is_an_error_not_a_silent_default(document):
    with pytest.raises(ValueError):
        parse_config(document)
