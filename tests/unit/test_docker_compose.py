import json
import re
from pathlib import Path

import yaml

from streams.topology import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _published(service: dict) -> list[tuple[str, str, str]]:
    """(host interface, host port or range, container port) of every published port."""
    published = []
    for port in service.get("ports", []):
        interface, host, container = str(port).rsplit(":", 2) if str(port).count(":") == 2 \
            else ("", *str(port).split(":"))
        published.append((interface, host, container))
    return published


def _host_ports(host: str) -> list[int]:
    first, _, last = host.partition("-")
    return list(range(int(first), int(last or first) + 1))


def test_the_stack_has_every_service():
    assert {"kafka", "kafka-init", "redis", "prometheus", "grafana", "worker", "collector",
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


def test_the_worker_scales_to_three_replicas_each_with_its_api_port_on_loopback():
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    ((interface, host, container),) = _published(worker)
    assert interface == "127.0.0.1" and container == str(Settings().web_port)
    assert len(_host_ports(host)) >= 3


def test_every_port_is_published_on_loopback_only():
    for name, service in SERVICES.items():
        for interface, _, _ in _published(service):
            assert interface == "127.0.0.1", f"{name} publishes on every interface"


def test_the_collector_runs_as_a_service_on_its_port():
    collector = SERVICES["collector"]
    assert collector["command"] == ["personify", "collect"]
    env = collector["environment"]
    assert env["PERSONIFY_COLLECTOR_HOST"] == "0.0.0.0"
    assert _published(collector) == [("127.0.0.1", env["PERSONIFY_COLLECTOR_PORT"],
                                      env["PERSONIFY_COLLECTOR_PORT"])]
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in collector["volumes"]}
    assert (ROOT / mounted[env["PERSONIFY_COLLECTOR_CONFIG_FILE"]]).is_file()
    assert "/health" in " ".join(collector["healthcheck"]["test"])


def test_the_worker_is_healthy_only_when_ready():
    worker = SERVICES["worker"]
    test = worker["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "personify.healthcheck"]
    assert test[4] == f"http://127.0.0.1:{worker['environment']['PERSONIFY_WEB_PORT']}/ready"
    assert worker["healthcheck"]["start_period"]
    from personify import healthcheck

    assert healthcheck.main(["http://127.0.0.1:9/ready"]) == 1


def test_state_lives_in_named_volumes_that_outlive_down():
    declared = set(COMPOSE["volumes"])

    def named_mounts(service: str) -> dict[str, str]:
        mounts = [v.split(":") for v in SERVICES[service].get("volumes", [])]
        return {target: source for source, target, *_ in mounts if source in declared}

    kafka = SERVICES["kafka"]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in named_mounts("kafka")
    assert "/data" in named_mounts("redis")
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    entrypoint = " ".join(SERVICES["worker"]["entrypoint"])
    state_dir = next(iter(named_mounts("worker")))
    assert f"PERSONIFY_DATA_DIR={state_dir}/$$(hostname)" in entrypoint
    assert entrypoint.endswith('exec "$$@" --')


def test_the_build_context_leaves_out_the_virtualenv_state_and_caches():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".personify", ".git", "**/__pycache__", ".pytest_cache",
            ".ruff_cache", ".hypothesis"} <= ignored
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert source not in ignored and (ROOT / source).exists(), source


def test_the_simulator_is_a_one_shot_profile():
    assert SERVICES["simulator"]["profiles"] == ["simulate"]


def test_environment_names_are_real_settings():
    known = {f"PERSONIFY_{name.upper()}" for name in Settings.__dataclass_fields__}
    for name in ("worker", "collector", "simulator"):
        for variable in SERVICES[name]["environment"]:
            assert variable in known, f"{name} sets unknown {variable}"


def test_host_ports_do_not_collide():
    host_ports = [port for service in SERVICES.values()
                  for _, host, _ in _published(service) for port in _host_ports(host)]
    assert len(host_ports) == len(set(host_ports))


def test_compose_creates_the_topology_s_topics_before_the_workers_start():
    init = SERVICES["kafka-init"]
    assert init["command"] == ["personify", "topics"] and init["build"] == "."
    assert init["environment"]["PERSONIFY_PARTITIONS"] == "4"
    assert SERVICES["worker"]["depends_on"]["kafka-init"] == {
        "condition": "service_completed_successfully"}


def test_prometheus_scrapes_the_worker_service_and_loads_the_rules():
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    sd = config["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == 16066


def test_grafana_is_provisioned_with_the_datasource_and_dashboards():
    provisioning = ROOT / "ops/grafana/provisioning"
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and datasource["isDefault"]
    mounts = dict(v.split(":")[:2][::-1] for v in SERVICES["grafana"]["volumes"])
    assert mounts["/etc/grafana/provisioning"] == "./ops/grafana/provisioning"
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards/personify.yml").read_text())["providers"]
    dashboards = list((ROOT / mounts[provider["options"]["path"]]).glob("*.json"))
    assert dashboards
    for path in dashboards:
        board = json.loads(path.read_text())
        assert board["panels"]
        chooser = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
        assert chooser["query"] == datasource["type"]


EXACT_IMAGE = re.compile(r"^[\w./-]+(:v?\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def test_every_image_is_pinned_to_an_exact_version():
    images = [s["image"] for s in SERVICES.values() if "image" in s]
    images += re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for image in images:
        assert EXACT_IMAGE.match(image) and (":" in image or "@" in image), image


def test_service_commands_are_real_personify_commands():
    from personify.cli import build_parser

    for name in ("worker", "collector", "simulator"):
        command = SERVICES[name]["command"]
        assert command[0] == "personify"
        build_parser(command[1]).parse_args(command[1:])
