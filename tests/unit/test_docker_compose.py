import json
import re
from pathlib import Path

import yaml

from personify.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_has_every_service():
    assert {"kafka", "kafka-init", "redis", "prometheus", "grafana", "worker",
            "simulator"} <= set(SERVICES)


def test_kafka_is_the_official_image_in_kraft_mode_with_two_listeners():
    kafka = SERVICES["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(a.startswith("INTERNAL://kafka:") for a in advertised)
    assert any(a.startswith("HOST://localhost:") for a in advertised)


def test_every_mounted_or_built_file_exists():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()


def test_the_worker_scales_without_fixed_host_ports():
    worker = SERVICES["worker"]
    assert "ports" not in worker and "container_name" not in worker


def test_the_simulator_is_a_one_shot_profile():
    assert SERVICES["simulator"]["profiles"] == ["simulate"]


def test_environment_names_are_real_settings():
    known = {f"PERSONIFY_{name.upper()}" for name in Settings.__dataclass_fields__}
    for name in ("worker", "simulator"):
        for variable in SERVICES[name]["environment"]:
            assert variable in known, f"{name} sets unknown {variable}"


def test_host_ports_do_not_collide():
    host_ports = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_topics_created_in_compose_are_the_registry_topics_with_explicit_partitions():
    script = (ROOT / "ops/kafka/create-topics.sh").read_text()
    topics = Settings().topics
    for field in topics.__dataclass_fields__:
        assert getattr(topics, field) in script
    assert "--partitions" in script


def test_prometheus_scrapes_the_worker_service_and_loads_the_rules():
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    sd = config["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == 16066


def test_grafana_is_provisioned_with_the_datasource_and_dashboards():
    provisioning = ROOT / "ops/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = list((ROOT / "ops/grafana/dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        assert json.loads(path.read_text())["panels"]


def test_compose_mentions_no_unknown_image_tags():
    for service in SERVICES.values():
        if "image" in service:
            assert re.match(r"^[\w./-]+:[\w.-]+$", service["image"])


def test_service_commands_are_real_personify_commands():
    from personify.cli import build_parser

    for name in ("worker", "simulator"):
        command = SERVICES[name].get("command") or ["personify", "worker"]
        assert command[0] == "personify"
        build_parser(command[1]).parse_args(command[1:])
