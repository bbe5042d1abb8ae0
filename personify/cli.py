"""The `personify` command: the local stack, the worker, the demo, and the data tools.

Every error ends in one line on stderr that says what to do next; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from importlib import metadata

from personify.stack.processes import StackError
from streams.broker import BrokerUnreachable
from streams.topology import Settings

PIPELINE_MODULES = ("faust", "mode", "aiokafka", "redis", "rocksdict", "prometheus_client", "tqdm")
"""Installed by `personify[pipeline]`, not by the SDK's base install."""

OWN_LOGGING = ("worker", "collect")
"""Commands that set up logging themselves (Faust's worker, the collector's access log)."""

# Subcommands provided by their own modules: each has add_arguments(parser) and run(args, settings).
TOOL_COMMANDS = {
    "simulate": ("personify.simulator", "generate a realistic population of events"),
    "send": ("personify.send", "produce a JSONL file of events to the input topics"),
    "credits": ("personify.credits", "running credit totals by model and channel"),
    "views": ("personify.views", "rebuild Redis's serving views from Kafka"),
    "topics": ("personify.topics", "create the project's topics (idempotent), or --list them"),
    "collect": ("personify.collector.command", "the HTTP collector: events from browsers, "
                "backends and Segment-style clients"),
}


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from personify.stack import services

    if args.action == "up":
        names = tuple(args.only.split(",")) if args.only else services.SERVICE_NAMES
        services.up(settings, names, started_file=args.started_file)
        print("the stack is up; `personify stack status` tells what runs where, "
              "`personify stack down` stops it")
        return 0
    if args.action == "down":
        names = tuple(args.only.split(",")) if args.only else ("worker", *services.SERVICE_NAMES)
        services.down(settings, names)
        return 0
    if args.action == "status":
        return services.status(settings)
    if args.action == "logs":
        services.logs(settings, args.service, args.lines)
        return 0
    services.wipe(settings)
    print("broker data and worker state deleted; the next `personify stack up` starts empty")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import run_worker

    return run_worker(settings, loglevel=args.loglevel, fast_restore=args.fast_restore)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from personify.demo import run

    return run(args, settings)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI; a tool's module is imported only when its command is `selected`."""
    parser = argparse.ArgumentParser(
        prog="personify",
        description="Real-time revenue personification: who are my best customers, and where "
                    "did they come from? Settings come from PERSONIFY_* environment variables.")
    parser.add_argument("--version", action="version", version=f"personify {version()}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the traceback; show debug log lines")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the local Kafka, Redis and Prometheus")
    stack.set_defaults(handler=_stack)
    actions = stack.add_subparsers(dest="action", required=True)
    stack_up = actions.add_parser("up", help="start what is not running (idempotent)")
    stack_up.add_argument("--only", help="comma-separated subset of kafka,redis,prometheus")
    stack_up.add_argument("--started-file", type=_path, help="write the names this call started")
    stack_down = actions.add_parser("down", help="stop what personify started")
    stack_down.add_argument("--only",
                            help="comma-separated subset of worker,kafka,redis,prometheus")
    actions.add_parser("status", help="what is up, on which port, and what is not")
    stack_logs = actions.add_parser("logs", help="the end of a server's log")
    stack_logs.add_argument("service", choices=("kafka", "redis", "prometheus", "worker"),
                            help="whose log")
    stack_logs.add_argument("-n", "--lines", type=int, default=40,
                            help="how many lines from the end (default 40)")
    actions.add_parser("wipe", help="delete broker data and worker state (stack must be down)")

    worker = commands.add_parser("worker", help="run the stream processor in the foreground")
    worker.add_argument("--no-fast-restore", dest="fast_restore", action="store_false",
                        help="rebuild missing table state with Faust's own recovery only "
                             "(slower; to compare, or should the fast restorer misbehave)")
    worker.add_argument("--loglevel", default="info",
                        choices=("debug", "info", "warning", "error", "critical"),
                        help="the least severe log lines shown (default info)")
    worker.set_defaults(handler=_worker)

    demo = commands.add_parser("demo", help="the main job: stack, worker, and the answer")
    demo.set_defaults(handler=_demo)
    importlib.import_module("personify.demo").add_arguments(demo)

    for name, (module, summary) in TOOL_COMMANDS.items():
        sub = commands.add_parser(name, help=summary)
        if name == selected:
            tool = importlib.import_module(module)
            tool.add_arguments(sub)
            sub.set_defaults(handler=tool.run)
    return parser


def _path(value: str):
    from pathlib import Path

    return Path(value)


def version() -> str:
    try:
        return metadata.version("personify")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def explain(exc: BaseException) -> tuple[str, int]:
    """The one line (and exit code) that tells what went wrong and what to do next."""
    from personify.sdk import DeliveryFailed

    if isinstance(exc, (StackError, ValueError, DeliveryFailed, BrokerUnreachable)):
        return str(exc), 2
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in PIPELINE_MODULES:
        return (f"this command needs the pipeline's dependencies ({exc.name} is missing): "
                "pip install 'personify[pipeline]', or run `make demo`, which installs them"), 2
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}", 2
    kind = type(exc).__name__
    if kind == "KafkaException":
        return (f"the Kafka client failed: {exc}; is the stack up? (`personify stack up`, "
                "`personify stack status`)"), 2
    return f"{kind}: {exc} (run `personify --debug ...` to see where)", 1


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv`: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv[: argv.index(_command_of(argv))] if _command_of(argv) else False
    try:
        args = build_parser(_command_of(argv)).parse_args(argv)
        if args.command not in OWN_LOGGING:
            logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                                format="personify: %(message)s")
        settings = Settings.from_env()
        return args.handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as exc:
        if debug:
            raise
        line, code = explain(exc)
        print(f"personify: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
