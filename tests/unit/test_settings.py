import pytest

from streams.topology import Settings


def test_settings_come_from_personify_variables_only():
    settings = Settings.from_env({"PERSONIFY_PARTITIONS": "8", "PERSONIFY_WEB_PORT": "17000",
                                  "PERSONIFY_TOPIC_CREDITS": "credits-test", "PARTITIONS": "99"})
    assert settings.partitions == 8
    assert settings.web_port == 17000
    assert settings.topics.credits == "credits-test"
    assert settings.topics.page_views == "page-views-v1"


def test_defaults_bind_to_loopback_on_project_ports():
    settings = Settings.from_env({})
    assert settings.web_host == "127.0.0.1"
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.redis_url.startswith("redis://127.0.0.1:16379")


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="PERSONIFY_PARTITIONS"):
        Settings.from_env({"PERSONIFY_PARTITIONS": "four"})


def test_settings_are_immutable():
    with pytest.raises(AttributeError):
        Settings().partitions = 2


def test_settings_survive_a_round_trip_through_the_environment(tmp_path):
    settings = Settings(partitions=2, app_id="x", data_dir=tmp_path, api_token="t")
    assert Settings.from_env(settings.to_env()) == settings


def test_credits_default_to_the_topic_that_carries_corrections():
    topics = Settings().topics
    assert topics.credits == "attribution-credits-v2"
    assert (topics.profiles, topics.dead_letters) == ("profiles-v1", "dead-letters-v1")
