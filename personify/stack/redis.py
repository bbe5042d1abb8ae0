"""A Redis server for the serving views, on loopback, without persistence (Kafka is the record)."""

from __future__ import annotations

from urllib.parse import urlparse

from personify.stack.debian import ensure_program
from personify.stack.processes import Managed, StackError, port_open, wait_until
from streams.topology import Settings


class RedisServer:
    def __init__(self, settings: Settings) -> None:
        url = urlparse(settings.redis_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 6379
        root = settings.cache_dir
        self.data_dir = root / "redis"
        self.process = Managed("redis", root / "run", root / "logs",
                               marker=f"{self.host}:{self.port}")

    def describe(self) -> str:
        return f"Redis on {self.host}:{self.port}"

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self, progress=print) -> str:
        if self.process.pid() is not None:
            wait_until(self.ready, timeout_s=20, what=self.describe(), log=self.process.log_file)
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(f"port {self.port} on {self.host} is taken by a process the project "
                             "did not start; stop it or choose another with PERSONIFY_REDIS_URL.")
        server = ensure_program("redis-server", "redis-server", progress)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start([server, "--bind", self.host, "--port", str(self.port),
                            "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
                            "--appendfsync", "always",
                            "--daemonize", "no", "--protected-mode", "yes"])
        wait_until(self.ready, timeout_s=20, what=self.describe(), log=self.process.log_file)
        return "started"
