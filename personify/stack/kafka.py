"""A single-node Apache Kafka broker (KRaft, combined mode) from jars resolved through Maven."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from personify.stack.processes import Managed, StackError, exit_status, port_open, wait_until
from streams.topology import Settings

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.personify.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""

SERVER_PROPERTIES = """# Written by `personify stack up`; edit the settings, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=-1
log.segment.bytes=104857600
"""


class KafkaBroker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        self.host, self.port = host, int(port)
        root = settings.cache_dir
        self.libs = root / "kafka" / f"libs-{settings.kafka_version}"
        self.data_dir = root / "kafka" / "data"
        self.config_file = root / "kafka" / "server.properties"
        self.process = Managed("kafka", root / "run", root / "logs", marker=str(self.config_file))

    def describe(self) -> str:
        return f"Kafka {self.settings.kafka_version} broker on {self.host}:{self.port}"

    def ensure_jars(self, progress=print) -> None:
        """Resolve the broker's runtime classpath once; later starts need no network."""
        if (self.libs / ".complete").exists():
            return
        needed = (("java", "install a Java 17+ JDK (apt-get install openjdk-17-jre-headless)"),
                  ("mvn", "install Maven (apt-get install maven)"))
        for tool, hint in needed:
            if shutil.which(tool) is None:
                raise StackError(f"`{tool}` is not on PATH: {hint}, then run the command again.")
        progress(f"resolving Apache Kafka {self.settings.kafka_version} jars through Maven "
                 f"(once; cached in {self.libs}) ...")
        build = self.libs.parent / "maven"
        build.mkdir(parents=True, exist_ok=True)
        (build / "pom.xml").write_text(POM.format(version=self.settings.kafka_version))
        staging = self.libs.with_name(self.libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(build / "pom.xml"), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StackError("Maven could not resolve the Kafka jars; check that the Maven "
                             "repository is reachable (or ~/.m2 settings), then retry.\n"
                             + (result.stdout + result.stderr)[-3000:])
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        (self.libs / ".complete").write_text(self.settings.kafka_version)

    def ready(self) -> bool:
        """A real metadata request, not just an open port."""
        from confluent_kafka.admin import AdminClient

        from streams.broker import client_config

        if not port_open(self.host, self.port):
            return False
        try:
            AdminClient(client_config(self.settings.kafka_bootstrap)).list_topics(timeout=2)
        except Exception:
            return False
        return True

    def start(self, progress=print) -> str:
        if self.process.pid() is not None:
            if self.ready():
                return "already running"
            wait_until(self.ready, timeout_s=60, what=self.describe(), log=self.process.log_file)
            return "already running"
        for port in (self.port, self.settings.kafka_controller_port):
            if port_open(self.host, port):
                raise StackError(
                    f"port {port} on {self.host} is taken by a process the project did not start; "
                    "stop it, or choose other ports with PERSONIFY_KAFKA_BOOTSTRAP and "
                    "PERSONIFY_KAFKA_CONTROLLER_PORT.")
        self.ensure_jars(progress)
        self._write_config()
        classpath = f"{self.libs}/*"
        java = ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.process.log_dir}",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
                "-cp", classpath]
        if not (self.data_dir / "meta.properties").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fmt = subprocess.run(format_command(java, self.config_file, _cluster_id()),
                                 capture_output=True, text=True)
            if fmt.returncode != 0:
                raise StackError("formatting the Kafka data directory failed:\n"
                                 + (fmt.stdout + fmt.stderr)[-3000:])
        broker = self.process.start([*java, "kafka.Kafka", str(self.config_file)])
        wait_until(self.ready, timeout_s=90, what=self.describe(), log=self.process.log_file,
                   gone=lambda: exit_status(broker))
        return "started"

    def _write_config(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(server_properties(
            self.port, self.settings.kafka_controller_port, self.data_dir,
            self.settings.partitions))

    def wipe(self) -> None:
        """Forget all topics; the worker's local state is wiped with it (it would be stale)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)


def server_properties(port: int, controller_port: int, data_dir: Path, partitions: int) -> str:
    return SERVER_PROPERTIES.format(port=port, controller_port=controller_port,
                                    data_dir=data_dir, partitions=partitions)


def format_command(java: list[str], config_file: Path, cluster_id: str) -> list[str]:
    """StorageTool's format; `--cluster-id=` keeps an id that starts with `-` a value."""
    return [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
            f"--config={config_file}", "--ignore-formatted"]


def _cluster_id() -> str:
    """A random 16-byte id in Kafka's URL-safe base64 form (it may start with `-`, hence the
    `--cluster-id=` spelling above)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

