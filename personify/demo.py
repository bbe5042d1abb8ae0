"""`personify demo`: the main job, end to end, with the answer at the end.

Brings up the local stack and the worker, simulates a population (fixed seed, so every run
tells the same story), sends it as fast as the pipeline takes it, waits until the worker has
processed every event and published every credit, then prints who the best customers are and
where they came from, checked against the simulator's ground truth, which paid channel has the
best LTV:CAC, and writes the same answer as a self-contained HTML page. Each phase is timed.

The answer is read from the output topics and limited to the simulated people, so earlier data
on the same topics (another run, another seed) does not change it; the spend topic is read
whole, each line counted once by its campaign and event id (the simulator's ids name the
campaign and day, so a second run of the same days adds nothing). Servers that already answer
on the configured ports are reused, whoever started them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from tqdm import tqdm

from personify import simulator
from personify.report import TopicReader, Truth, load_truth, render_html, render_text
from personify.send import SendSummary, cli_client, send_file
from personify.stack import services
from personify.stack.worker_process import http_get, samples, start_stack_worker, totals_by_name
from processors.config import PipelineConfig
from processors.spend import SpendBook
from readmodels.report import MIN_CUSTOMERS, CreditBook, ProfileBook, build_report
from streams.config_files import load_pipeline_config
from streams.topology import PROJECT_ROOT, Settings, ensure_topics

DEFAULT_PEOPLE = 20_000
DEFAULT_SEED = 2025
DEFAULT_REPORT = PROJECT_ROOT / "reports" / "personify-report.html"
POLL_S = 0.5
SETTLE_S = 15.0
"""Once every sent event is consumed, how long nothing may move (events finished, credits
published) before the report goes ahead with what was published, saying what is missing."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", type=int, default=DEFAULT_PEOPLE,
                        help=f"people to simulate (default {DEFAULT_PEOPLE:,})")
    parser.add_argument("--days", type=int, default=90, help="simulated days (default 90)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed (default {DEFAULT_SEED}: the same story every run)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                        help="where to write the HTML report (default reports/"
                             "personify-report.html)")
    parser.add_argument("--min-customers", type=int, default=MIN_CUSTOMERS,
                        help="segments and channels with fewer customers are marked low "
                             f"confidence and never ranked first (default {MIN_CUSTOMERS})")
    parser.add_argument("--stall-timeout", type=float, default=180.0,
                        help="give up when the worker makes no progress for this many seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------------- phases


@dataclass
class Phases:
    """Wall time of each phase, printed at the end."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def phase(self, name: str, announce: str) -> Iterator[None]:
        print(f"==> {announce}", flush=True)
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - t0

    def describe(self) -> str:
        timings = " · ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"phases: {timings}\ntotal {time.monotonic() - self.started:.1f} s"


def run(args: argparse.Namespace, settings: Settings) -> int:
    phases = Phases()
    with phases.phase("stack", "local stack (Kafka, Redis, Prometheus)"):
        bring_up_stack(settings)
    with phases.phase("worker", "worker"):
        state = start_stack_worker(settings)
        print(f"worker on http://{settings.web_host}:{settings.web_port}: {state}")
    with phases.phase("simulate", f"simulate {args.people:,} people over {args.days} days "
                                  f"(seed {args.seed})"):
        events, truth_path = simulate(args, settings)
        truth = load_truth(truth_path)
    population = frozenset(person.user_id for person in truth.people)
    credits, profiles = CreditBook(population), ProfileBook(population)
    with TopicReader(settings, settings.topics.credits) as credit_reader:
        before = WorkerCounts.scrape(settings)
        with phases.phase("send", f"send {events.name} to "
                                  f"{', '.join(settings.topics.all_inputs())}"):
            with cli_client(settings) as client:
                sent = send_file(client, events, progress=not args.no_progress)
            print(sent.describe())
        with phases.phase("process", "wait until the worker has processed everything"):
            complete = wait_for_pipeline(settings, sent, before, truth, credit_reader, credits,
                                         stall_s=args.stall_timeout,
                                         progress=not args.no_progress)
        with phases.phase("read", f"read {settings.topics.credits} and "
                                  f"{settings.topics.profiles}"):
            read_outputs(settings, credit_reader, credits, profiles)
    movements = WorkerCounts.scrape(settings).movements_since(before)
    with phases.phase("report", "the answer"):
        title = (f"{args.people:,} people simulated over {args.days} days (seed {args.seed}): "
                 f"{sent.delivered:,} events")
        answer(settings, profiles, credits, truth, movements, title=title, html_path=args.report,
               min_customers=args.min_customers)
    print(where_to_look(settings, args.report))
    if not complete:
        print("\nthe pipeline did not finish in time: the answer above is partial")
    print(phases.describe())
    return 0 if complete and sent.ok else 1


# ---------------------------------------------------------------------------------- steps


def bring_up_stack(settings: Settings) -> None:
    """`services.up` for the servers that do not answer yet; answering ones are reused."""
    answering = [name for name, server in services.servers(settings).items()
                 if server.process.pid() is None and server.ready()]
    for name in answering:
        print(f"{services.servers(settings)[name].describe():<45} answering (reused)")
    services.up(settings, tuple(n for n in services.SERVICE_NAMES if n not in answering))
    if "kafka" in answering:
        created = ensure_topics(settings)
        if created:
            print(f"created topics ({settings.partitions} partitions): {', '.join(created)}")


def simulate(args: argparse.Namespace, settings: Settings) -> tuple[Path, Path]:
    """Write the population and its truth under the cache dir with `personify simulate`."""
    folder = settings.cache_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{args.people}-people-{args.days}-days-seed-{args.seed}"
    events, truth = folder / f"events-{stem}.jsonl", folder / f"truth-{stem}.json"
    parser = argparse.ArgumentParser()
    simulator.add_arguments(parser)
    options = ["--people", str(args.people), "--days", str(args.days), "--seed", str(args.seed),
               "--out", str(events), "--truth", str(truth), "--spend"]
    code = simulator.run(parser.parse_args(options + ["--no-progress"] * args.no_progress),
                         settings)
    if code != 0:
        raise ValueError(f"the simulator failed with exit code {code}")
    return events, truth


@dataclass(frozen=True)
class WorkerCounts:
    """The worker's counters that tell how far it got (process-local: compare two scrapes)."""

    consumed: float = 0.0
    finished: float = 0.0
    """Processed or dead-lettered: consumed = processed + dead-lettered once all is through."""
    dead_lettered: float = 0.0
    movements: dict[str, float] = field(default_factory=dict)

    @classmethod
    def scrape(cls, settings: Settings) -> WorkerCounts:
        status, body = http_get(settings, "/metrics")
        if status != 200:
            return cls()
        text = body.decode()
        sums = totals_by_name(text)
        movements = {labels["kind"]: value for name, labels, value in samples(text)
                     if name == "personify_mrr_movements_total"}
        dead = sums.get("personify_dead_letters_total", 0.0)
        return cls(consumed=sums.get("personify_events_consumed_total", 0.0),
                   finished=sums.get("personify_events_processed_total", 0.0) + dead,
                   dead_lettered=dead, movements=movements)

    def movements_since(self, before: WorkerCounts) -> dict[str, int]:
        """Movements counted between two scrapes; none when the worker restarted between them."""
        if self.consumed < before.consumed:
            return {}
        return {kind: round(count - before.movements.get(kind, 0.0))
                for kind, count in self.movements.items()}


def wait_for_pipeline(settings: Settings, sent: SendSummary, before: WorkerCounts, truth: Truth,
                      credit_reader: TopicReader, credits: CreditBook, *, stall_s: float,
                      progress: bool) -> bool:
    """Until the worker has consumed and finished every sent event and the credits topic holds
    one credit per revenue event and model, or, once all is consumed, until nothing moves for
    `SETTLE_S` (the shortfall is reported); False when the worker stalls for `stall_s`.

    The worker's counters are process-local: when they fall below the first scrape, the worker
    restarted, and from then on only the credits tell how far it got."""
    models = load_pipeline_config(settings).attribution.models
    expected = truth.revenue_events * len(models)
    started = last_progress = time.monotonic()
    previous: tuple[float, ...] = ()
    restarted = False
    with tqdm(total=sent.delivered, unit="events", desc="process", disable=not progress) as bar:
        while True:
            now = WorkerCounts.scrape(settings)
            credit_reader.read_available(credits.add)
            if not restarted and now.consumed < before.consumed:
                restarted = True
                tqdm.write("the worker restarted: waiting for the credits alone")
            consumed, finished = now.consumed - before.consumed, now.finished - before.finished
            records = credits.ledger.credit_sets
            bar.n = int(max(0, min(consumed, finished, sent.delivered)))
            bar.set_postfix(credits=f"{records:,}/{expected:,}", refresh=False)
            bar.refresh()
            moment = time.monotonic()
            mark = ((credits.ledger.records,) if restarted
                    else (finished, credits.ledger.records))
            if mark != previous:
                previous, last_progress = mark, moment
            settled = moment - last_progress >= SETTLE_S
            if restarted and records >= expected:
                break
            if (not restarted and consumed >= sent.delivered
                    and (finished >= consumed or settled) and (records >= expected or settled)):
                _warn_shortfalls(consumed - finished, expected - records)
                break
            if moment - last_progress >= stall_s:
                tqdm.write(f"warning: no progress for {stall_s:.0f} s ({int(finished):,} of "
                           f"{sent.delivered:,} events finished, {records:,} of {expected:,} "
                           "credits); see `personify stack logs worker`")
                return False
            time.sleep(POLL_S)
    dead = int(now.dead_lettered - before.dead_lettered)
    events = "" if restarted else (f"{int(finished):,} events finished ({dead:,} "
                                   "dead-lettered) and ")
    print(f"{events}{records:,} credit sets ({credits.ledger.corrections:,} corrected) in "
          f"{time.monotonic() - started:.1f} s")
    return True


def _warn_shortfalls(unfinished: float, missing_credits: int) -> None:
    """What the worker left unaccounted once nothing moved for `SETTLE_S` (DESIGN.md §8)."""
    if unfinished > 0:
        tqdm.write(f"warning: {int(unfinished):,} consumed events were neither processed nor "
                   f"dead-lettered after {SETTLE_S:.0f} s without progress "
                   "(consumed = processed + dead-lettered does not hold)")
    if missing_credits > 0:
        tqdm.write(f"warning: {missing_credits:,} expected credits were not published")


def read_outputs(settings: Settings, credit_reader: TopicReader, credits: CreditBook,
                 profiles: ProfileBook) -> None:
    credit_reader.read_to_end(credits.add)
    with TopicReader(settings, settings.topics.profiles) as profile_reader:
        profile_reader.read_to_end(profiles.add)
    print(f"{credits.ledger.records:,} credits ({credits.ledger.duplicates:,} duplicates "
          f"ignored) and {len(profiles.latest):,} profiles of the simulated people; "
          f"{credits.ignored + profiles.ignored:,} records of other people skipped")


def read_spend(settings: Settings, config: PipelineConfig) -> dict[str, int]:
    """Channel → spend, from the spend topic, validated and counted once as the worker does."""
    book = SpendBook(config.spend)
    now_ms = time.time_ns() // 1_000_000
    with TopicReader(settings, settings.topics.spend) as reader:
        reader.read_to_end(partial(book.add, now_ms=now_ms, validation=config.validation),
                           parse=bytes)
    return book.by_channel()


def answer(settings: Settings, profiles: ProfileBook, credits: CreditBook, truth: Truth,
           movements: dict[str, int], *, title: str, html_path: Path,
           min_customers: int = MIN_CUSTOMERS) -> None:
    """Print the report and write it as HTML, in the pipeline's reporting currency."""
    pipeline_config = load_pipeline_config(settings)
    config = pipeline_config.attribution
    report = build_report(
        profiles, credits, models=config.models, currency=config.reporting_currency,
        exponent=config.currency_table[config.reporting_currency].exponent,
        truth=truth.people, mrr_movements=movements, min_customers=min_customers,
        spend_minor=read_spend(settings, pipeline_config))
    print(render_text(report, title=title))
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(report, title=title, footer=(
        f"Read from {settings.topics.profiles} and {settings.topics.credits} on "
        f"{settings.kafka_bootstrap}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.")))


def where_to_look(settings: Settings, report: Path) -> str:
    web = f"http://{settings.web_host}:{settings.web_port}"
    return (f"\nHTML report  {report.resolve()}\n"
            f"  metrics     {web}/metrics\n"
            f"  health      {web}/health  and  {web}/ready\n"
            f"  Prometheus  http://127.0.0.1:{settings.prometheus_port}\n"
            f"  Kafka       {settings.kafka_bootstrap}\n"
            f"              inputs  {', '.join(settings.topics.all_inputs())}\n"
            f"              outputs {settings.topics.credits}, {settings.topics.profiles}, "
            f"{settings.topics.dead_letters}\n"
            f"  Redis       {settings.redis_url}\n"
            "status:       .venv/bin/personify stack status\n"
            "stop:         .venv/bin/personify stack down")
