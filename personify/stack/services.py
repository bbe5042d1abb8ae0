"""`personify stack up | down | status | logs`: the local servers as one unit."""

from __future__ import annotations

import time
from pathlib import Path

from personify.stack.kafka import KafkaBroker
from personify.stack.processes import StackError, log_tail, port_open
from personify.stack.prometheus import PrometheusServer
from personify.stack.redis import RedisServer
from personify.stack.worker_process import stack_worker
from streams.topology import Settings, ensure_topics

SERVICE_NAMES = ("kafka", "redis", "prometheus")


def servers(settings: Settings) -> dict[str, KafkaBroker | RedisServer | PrometheusServer]:
    return {"kafka": KafkaBroker(settings), "redis": RedisServer(settings),
            "prometheus": PrometheusServer(settings)}


def up(settings: Settings, names: tuple[str, ...] = SERVICE_NAMES, started_file: Path | None = None,
       progress=print) -> list[str]:
    """Start what is not running yet; returns the names this call started."""
    started = []
    for name, server in servers(settings).items():
        if name not in names:
            continue
        t0 = time.monotonic()
        state = server.start(progress)
        progress(f"{server.describe():<45} {state} ({time.monotonic() - t0:.1f} s)")
        if state == "started":
            started.append(name)
    if "kafka" in names:
        created = ensure_topics(settings)
        if created:
            progress(f"created topics ({settings.partitions} partitions): {', '.join(created)}")
    if started_file is not None:
        started_file.write_text(" ".join(started))
    return started


def down(settings: Settings, names: tuple[str, ...] = ("worker", *SERVICE_NAMES),
         progress=print) -> None:
    """Stop only processes the project started (found by their pid files)."""
    managed = {"worker": stack_worker(settings).managed}
    managed.update({name: server.process for name, server in servers(settings).items()})
    for name in names:
        stopped = managed[name].stop()
        progress(f"{name:<11} {'stopped' if stopped else 'was not running (nothing to stop)'}")


def status(settings: Settings) -> int:
    """Plain words per service, from the configured ports as much as from the pid files (a pid
    file says what personify started, the port what answers there); exit code 0 only when all
    servers are up."""
    all_up = True
    for name, server in servers(settings).items():
        up, line = _server_status(server)
        all_up = all_up and up
        print(f"{name:<11} {line}")
    print(f"{'worker':<11} {_worker_status(settings)}")
    return 0 if all_up else 1


def _server_status(server: KafkaBroker | RedisServer | PrometheusServer) -> tuple[bool, str]:
    pid, answers = server.process.pid(), port_open(server.host, server.port)
    where = f"{server.host}:{server.port}"
    if pid is not None and answers and server.ready():
        return True, f"up      {server.describe()} (pid {pid}, started by personify)"
    if pid is not None and answers:
        return False, f"STARTING {server.describe()} (process running, not answering yet)"
    if pid is not None:
        return False, (f"MISMATCH {server.describe()}: personify started pid {pid}, but nothing "
                       f"answers on {where}: still starting, or started with other settings "
                       "(`personify stack down`, then `personify stack up`)")
    if answers:
        return False, (f"FOREIGN {server.describe()}: the port answers but personify did not "
                       "start that process")
    return False, f"down    {server.describe()}: run `personify stack up`"


def _worker_status(settings: Settings) -> str:
    worker = stack_worker(settings)
    pid, url = worker.managed.pid(), worker.url
    answers = port_open(settings.web_host, settings.web_port)
    if pid is not None and answers:
        return f"up      {url} (pid {pid})"
    if pid is not None:
        return (f"MISMATCH personify started a worker (pid {pid}), but nothing answers on {url}: "
                "still starting, or started with another PERSONIFY_WEB_PORT "
                "(`personify stack down --only worker`)")
    if answers:
        return (f"FOREIGN {url} answers, but personify did not start that process "
                "(a worker run by hand, or another program on PERSONIFY_WEB_PORT)")
    return "down    start it with `personify worker` or `make demo`"


def logs(settings: Settings, name: str, lines: int) -> None:
    log = (stack_worker(settings).log if name == "worker"
           else servers(settings)[name].process.log_file)
    print(log_tail(log, lines))


def wipe(settings: Settings) -> None:
    """Delete broker data and worker state together (stale state would not match the topics)."""
    if any(server.process.pid() for server in servers(settings).values()):
        raise StackError("stop the stack first: `personify stack down`")
    KafkaBroker(settings).wipe()
