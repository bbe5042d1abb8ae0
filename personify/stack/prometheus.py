"""Prometheus scraping the worker with the project's alert rules."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from personify.stack.debian import ensure_program
from personify.stack.processes import Managed, StackError, port_open, wait_until
from streams.topology import PROJECT_ROOT, Settings

RULES = PROJECT_ROOT / "ops" / "prometheus" / "rules.yml"

LOCAL_CONFIG = """# Written by `personify stack up`; ops/prometheus/ holds the shared parts.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - {rules}
scrape_configs:
  - job_name: personify-worker
    static_configs:
      - targets: ["{target}"]
{authorization}"""


class PrometheusServer:
    """The local Prometheus: loopback only, no lifecycle API (nothing can stop or reload it
    over HTTP), scraping the worker with the API token when one is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host, self.port = "127.0.0.1", settings.prometheus_port
        root = settings.cache_dir
        self.config_file = root / "prometheus" / "prometheus.yml"
        self.data_dir = root / "prometheus" / "data"
        self.process = Managed("prometheus", root / "run", root / "logs",
                               marker=str(self.config_file))

    def _token_file(self, token: str) -> Path:
        """The token in a file only its owner reads (never on a command line or in the
        config Prometheus shows at /config)."""
        path = self.config_file.parent / "worker-token"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(token)
        return path

    def write_config(self) -> Path:
        """The scrape config: the worker, with the API token when one is set."""
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        target = f"{self.settings.web_host}:{self.settings.web_port}"
        token = self.settings.api_token
        authorization = (f"    authorization:\n      credentials_file: {self._token_file(token)}\n"
                         if token else "")
        self.config_file.write_text(LOCAL_CONFIG.format(rules=RULES, target=target,
                                                        authorization=authorization))
        return self.config_file

    def describe(self) -> str:
        return f"Prometheus on http://{self.host}:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, progress=print) -> str:
        if self.process.pid() is not None:
            wait_until(self.ready, timeout_s=30, what=self.describe(), log=self.process.log_file)
            return "already running"
        if port_open(self.host, self.port):
            raise StackError(f"port {self.port} is taken by a process the project did not start; "
                             "stop it or choose another with PERSONIFY_PROMETHEUS_PORT.")
        server = ensure_program("prometheus", "prometheus", progress)
        self.write_config()
        self.process.start([server, f"--config.file={self.config_file}",
                            f"--storage.tsdb.path={self.data_dir}",
                            f"--web.listen-address={self.host}:{self.port}",
                            "--storage.tsdb.retention.time=7d"])
        wait_until(self.ready, timeout_s=30, what=self.describe(), log=self.process.log_file)
        return "started"
