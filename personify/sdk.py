"""The instrumentation client: product code reports page views, signups and billing through it,
and a server-side job the marketing spend.

Each call builds the wire-contract payload (DESIGN.md §2), validates it with the pipeline's own
edge rules before it leaves the process (a bad event is the caller's bug, raised at the call
site rather than dead-lettered later), and produces it keyed the way the pipeline partitions:
page views and signups by `anonymous_id`, billing by `user_id`. The producer is idempotent
with `acks=all`, and uses `murmur2_random` so keys land on the partitions Faust expects
(DESIGN.md §9).

    with Personify() as personify:  # PERSONIFY_KAFKA_BOOTSTRAP, else the local stack's broker
        personify.page_view("anon-1", "https://www.example.com/pricing", referrer=None)
        personify.signup("anon-1", "user-1", traits={"company_size": 40})
        personify.payment("user-1", 4900, "USD")

Nothing is lost silently: `close` (the end of the `with` block) waits for the broker's
acknowledgements and raises `DeliveryFailed` with the count of events it did not get, or
`KafkaUnreachable` within `connect_timeout_s` when no broker answers. The SDK needs
confluent-kafka, orjson and fastjsonschema only (the base install); the pipeline's
dependencies come with `personify[pipeline]`.
"""

from __future__ import annotations

import atexit
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from processors.config import PipelineConfig
from processors.validation import Rejection, ValidationConfig, decode
from schemas.contract import INPUT_SCHEMAS
from schemas.contract import TopicKind as ContractKind
from streams.broker import CONNECT_TIMEOUT_S, BrokerWatch, kafka_logger, unreachable_message
from streams.topology import Settings, Topics

TopicKind = Literal["page_views", "signups", "billing", "spend"]
"""An input topic by its `Topics` field name; the configured name may differ."""

TOPIC_KINDS: tuple[TopicKind, ...] = ("page_views", "signups", "billing", "spend")
DAY_MS = 86_400_000

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "compression.type": "lz4",
    "linger.ms": 20,
}
"""Producer settings every client starts from; `producer_config` entries override them."""


UNSENT_AT_CLOSE = "not sent: the client closed before the broker acknowledged it"
"""The error of the delivery report of an event still queued when `close` gave up on it."""

_WAIT_STEP_S = 0.2
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})

log = logging.getLogger(__name__)


class InvalidEvent(ValueError):
    """The payload breaks the wire contract; it was not sent."""


class AmountNotInMinorUnits(InvalidEvent, TypeError):
    """A float amount: amounts are integers in minor units (4900 for 49.00), never rounded."""


class DeliveryFailed(RuntimeError):
    """Events the broker did not acknowledge: `undelivered` counts them, `failures` holds the
    delivery reports that no `on_delivery` callback took."""

    def __init__(self, failures: list[DeliveryReport], undelivered: int | None = None) -> None:
        self.failures = failures
        self.undelivered = len(failures) if undelivered is None else undelivered
        super().__init__(self.describe())

    def describe(self) -> str:
        first = (f"; first: {self.failures[0].topic} key={self.failures[0].key!r}: "
                 f"{self.failures[0].error}" if self.failures else "")
        return f"{self.undelivered} event(s) not delivered{first}"


class KafkaUnreachable(DeliveryFailed):
    """No broker answered for `connect_timeout_s`: nothing queued can be delivered."""

    def __init__(self, bootstrap: str, undelivered: int,
                 failures: list[DeliveryReport] | None = None) -> None:
        self.bootstrap = bootstrap
        super().__init__(failures or [], undelivered)

    def describe(self) -> str:
        return f"{unreachable_message(self.bootstrap)}; {self.undelivered} event(s) not delivered"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The outcome of one produced message; `error` is None when the broker stored it."""

    topic: str
    key: str | None
    partition: int | None
    offset: int | None
    error: str | None


# ------------------------------------------------------------------------------- payloads


def page_view_payload(
    *,
    event_id: str,
    ts: int | str,
    anonymous_id: str,
    url: str,
    referrer: str | None = None,
    user_id: str | None = None,
    campaign: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """A `page_view/1` payload; `campaign` (source, medium, name, term, content) is optional."""
    payload: dict[str, Any] = {
        "schema": "page_view/1",
        "event_id": event_id,
        "ts": ts,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "url": url,
        "referrer": referrer,
    }
    if campaign is not None:
        payload["campaign"] = dict(campaign)
    return payload


def signup_payload(
    *,
    event_id: str,
    ts: int | str,
    anonymous_id: str,
    user_id: str,
    traits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `signup/1` payload; traits: company, company_size (employees), industry, plan, country."""
    return {
        "schema": "signup/1",
        "event_id": event_id,
        "ts": ts,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "traits": None if traits is None else dict(traits),
    }


def _billing(kind: str, event_id: str, ts: int | str, user_id: str) -> dict[str, Any]:
    return {"schema": "billing/1", "event_id": event_id, "ts": ts, "user_id": user_id, "kind": kind}


def payment_payload(
    *, event_id: str, ts: int | str, user_id: str, amount_minor: int, currency: str
) -> dict[str, Any]:
    """A payment of `amount_minor` (> 0, minor units) in `currency` (ISO 4217)."""
    return _billing("payment", event_id, ts, user_id) | {
        "amount_minor": amount_minor,
        "currency": currency,
    }


def refund_payload(
    *, event_id: str, ts: int | str, user_id: str, amount_minor: int, currency: str, refund_of: str
) -> dict[str, Any]:
    """A refund of part or all of the payment `refund_of`, in that payment's currency."""
    return _billing("refund", event_id, ts, user_id) | {
        "amount_minor": amount_minor,
        "currency": currency,
        "refund_of": refund_of,
    }


def subscription_change_payload(
    *,
    event_id: str,
    ts: int | str,
    user_id: str,
    subscription_id: str,
    plan: str,
    mrr_minor: int,
    currency: str,
) -> dict[str, Any]:
    """A subscription's new state: `mrr_minor` is the monthly amount after the change (0 ends)."""
    return _billing("subscription_change", event_id, ts, user_id) | {
        "subscription_id": subscription_id,
        "plan": plan,
        "mrr_minor": mrr_minor,
        "currency": currency,
    }


def spend_payload(
    *, event_id: str, ts: int | str, source: str, medium: str, campaign: str,
    amount_minor: int, currency: str,
) -> dict[str, Any]:
    """What a campaign (its utm `source`, `medium`, `campaign`) cost on the UTC day starting at
    `ts`."""
    return {"schema": "spend/1", "event_id": event_id, "ts": ts, "source": source,
            "medium": medium, "campaign": campaign, "amount_minor": amount_minor,
            "currency": currency}


def kind_of_payload(payload: Mapping[str, Any]) -> TopicKind:
    """The input topic a payload belongs on, from its `schema` field."""
    schema = payload.get("schema")
    kind = _KIND_BY_SCHEMA.get(schema) if isinstance(schema, str) else None
    if kind is None:
        raise InvalidEvent(f"unknown schema {schema!r}")
    return kind


_CONTRACT_KINDS: Mapping[TopicKind, ContractKind] = {
    "page_views": "page_view",
    "signups": "signup",
    "billing": "billing",
    "spend": "spend",
}
"""Topic field name → the contract's name for what the topic carries."""

_KIND_BY_SCHEMA: Mapping[str, TopicKind] = {
    INPUT_SCHEMAS[contract_kind]: kind for kind, contract_kind in _CONTRACT_KINDS.items()
}


def key_of(kind: TopicKind, payload: Mapping[str, Any]) -> str:
    """The partition key the pipeline expects: `anonymous_id` for web events, `user_id` for
    billing, `source/medium/campaign` for spend."""
    if kind == "spend":
        return f"{payload['source']}/{payload['medium']}/{payload['campaign']}"
    return payload["user_id"] if kind == "billing" else payload["anonymous_id"]


# ----------------------------------------------------------------------------- validation


def default_validation() -> ValidationConfig:
    """The pipeline's own default validation rules (currency table, time range, size)."""
    return PipelineConfig().validation


URL_SCHEMES: Mapping[str, tuple[str, ...] | None] = {"url": ("http", "https"), "referrer": None}
"""Fields that hold URLs, and the schemes allowed (None: any, as `android-app://` referrers)."""


def check_amounts(payload: Mapping[str, Any]) -> None:
    """`AmountNotInMinorUnits` for a float in a `*_minor` field: 49.00 would be sent as 49."""
    for name, value in payload.items():
        if name.endswith("_minor") and isinstance(value, float):
            raise AmountNotInMinorUnits(
                f"{name}={value!r}: amounts are integer minor units (4900 for 49.00), not floats")


def check_urls(payload: Mapping[str, Any]) -> None:
    """`InvalidEvent` unless every URL field is absolute (scheme and host), http(s) for pages."""
    for name, schemes in URL_SCHEMES.items():
        value = payload.get(name)
        if value is None:
            continue
        parts = urlsplit(str(value))
        if not (parts.scheme and parts.netloc and (schemes is None or parts.scheme in schemes)):
            wanted = "http(s)" if schemes else "absolute"
            raise InvalidEvent(f"{name} {value!r} is not an {wanted} URL "
                               "(such as https://www.example.com/pricing)")


def encode_valid(payload: Mapping[str, Any], *, now_ms: int, config: ValidationConfig) -> bytes:
    """The payload's bytes, after the pipeline's own edge validation (`processors.validation`)
    accepted them; else `InvalidEvent` with the dead-letter reason it would have got. Stricter
    than the pipeline on what only a caller can get wrong: float amounts, relative URLs.

    Stateful checks (duplicate ids, refunds of unknown payments) stay with the pipeline."""
    check_amounts(payload)
    raw = orjson.dumps(payload)
    outcome = decode(raw, _CONTRACT_KINDS[kind_of_payload(payload)], now_ms=now_ms, config=config)
    if isinstance(outcome, Rejection):
        raise InvalidEvent(f"{outcome.reason.value}: {outcome.message}")
    check_urls(payload)
    return raw


# --------------------------------------------------------------------------------- client


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_event_id() -> str:
    return str(uuid.uuid4())


class Personify:
    """A producer of input events. Thread-safe like the confluent-kafka producer it wraps.

    `bootstrap_servers` and `topics` default to `PERSONIFY_KAFKA_BOOTSTRAP` and
    `PERSONIFY_TOPIC_*`, as for the command line, else the local stack's broker and topics.

    Delivery: with `on_delivery`, every message's `DeliveryReport` goes to the callback (from
    `poll`/`flush`); without it, failures are kept and `flush` and `close` raise them as
    `DeliveryFailed`. `close` gives up on what is still queued at its timeout and says so the
    same way; no broker answering for `connect_timeout_s` raises `KafkaUnreachable` (a
    `DeliveryFailed`). With `on_error`, those exceptions go to the callback instead of being
    raised. Messages still queued at interpreter exit are flushed (atexit) unless `close` ran.

    Each typed method (`page_view`, `payment`, ...) builds its payload with the matching
    `*_payload` function and hands it to `_send_built`; `track` takes any contract payload.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        topics: Topics | None = None,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
        on_error: Callable[[DeliveryFailed], None] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        producer_config: Mapping[str, Any] | None = None,
        validation: ValidationConfig | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        new_event_id: Callable[[], str] = _new_event_id,
    ) -> None:
        if bootstrap_servers is None or topics is None:
            environment = Settings.from_env()
            bootstrap_servers = bootstrap_servers or environment.kafka_bootstrap
            topics = topics or environment.topics
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self._validation = validation or default_validation()
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self._failures: list[DeliveryReport] = []
        self._on_delivery = on_delivery
        self._on_error = on_error
        self._connect_timeout_s = connect_timeout_s
        self._clock_ms = clock_ms
        self._new_event_id = new_event_id
        self._watch = BrokerWatch()
        config = {**PRODUCER_DEFAULTS, "logger": kafka_logger(),
                  "socket.connection.setup.timeout.ms": max(1000, int(connect_timeout_s * 1000)),
                  **(producer_config or {})}
        self._their_error_cb = config.pop("error_cb", None)
        self._producer = Producer({**config, "bootstrap.servers": bootstrap_servers,
                                   "error_cb": self._broker_error})
        atexit.register(self._flush_at_exit)

    # -- the contract's events; each returns the event_id it sent

    def page_view(
        self,
        anonymous_id: str,
        url: str,
        *,
        referrer: str | None = None,
        user_id: str | None = None,
        campaign: Mapping[str, str | None] | None = None,
        event_id: str | None = None,
        ts: int | str | None = None,
    ) -> str:
        return self._send_built(page_view_payload(
            event_id=event_id or self._new_event_id(), ts=self._ts(ts),
            anonymous_id=anonymous_id, url=url, referrer=referrer, user_id=user_id,
            campaign=campaign))

    def signup(
        self,
        anonymous_id: str,
        user_id: str,
        *,
        traits: Mapping[str, Any] | None = None,
        event_id: str | None = None,
        ts: int | str | None = None,
    ) -> str:
        return self._send_built(signup_payload(
            event_id=event_id or self._new_event_id(), ts=self._ts(ts),
            anonymous_id=anonymous_id, user_id=user_id, traits=traits))

    def payment(
        self,
        user_id: str,
        amount_minor: int,
        currency: str,
        *,
        event_id: str | None = None,
        ts: int | str | None = None,
    ) -> str:
        return self._send_built(payment_payload(
            event_id=event_id or self._new_event_id(), ts=self._ts(ts), user_id=user_id,
            amount_minor=amount_minor, currency=currency))

    def refund(
        self,
        user_id: str,
        amount_minor: int,
        currency: str,
        refund_of: str,
        *,
        event_id: str | None = None,
        ts: int | str | None = None,
    ) -> str:
        return self._send_built(refund_payload(
            event_id=event_id or self._new_event_id(), ts=self._ts(ts), user_id=user_id,
            amount_minor=amount_minor, currency=currency, refund_of=refund_of))

    def subscription_change(
        self,
        user_id: str,
        subscription_id: str,
        plan: str,
        mrr_minor: int,
        currency: str,
        *,
        event_id: str | None = None,
        ts: int | str | None = None,
    ) -> str:
        return self._send_built(subscription_change_payload(
            event_id=event_id or self._new_event_id(), ts=self._ts(ts), user_id=user_id,
            subscription_id=subscription_id, plan=plan, mrr_minor=mrr_minor, currency=currency))

    def track(self, payload: Mapping[str, Any]) -> str:
        """Any contract event as a mapping, its `schema` naming it (`billing/1`, ...): validated
        like the typed methods; `event_id` and `ts` are filled in when missing or None."""
        event = dict(payload)
        if event.get("event_id") is None:
            event["event_id"] = self._new_event_id()
        if event.get("ts") is None:
            event["ts"] = self._clock_ms()
        return self._send_built(event)

    def spend(
        self,
        source: str,
        medium: str,
        campaign: str,
        amount_minor: int,
        currency: str,
        *,
        day_ms: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """What a campaign cost on the UTC day starting at `day_ms` (default: today). Give
        `event_id` one value per campaign and day (say `google/cpc/brand@2025-03-05`) so that
        sending a day again counts it once."""
        day = self._clock_ms() // DAY_MS * DAY_MS if day_ms is None else day_ms
        return self._send_built(spend_payload(
            event_id=event_id or self._new_event_id(), ts=day, source=source, medium=medium,
            campaign=campaign, amount_minor=amount_minor, currency=currency))

    # -- lower level, for tools

    def send_event(self, payload: Mapping[str, Any]) -> None:
        """Validate a complete contract payload and produce it to its topic under its key."""
        raw = encode_valid(payload, now_ms=self._clock_ms(), config=self._validation)
        kind = kind_of_payload(payload)
        self.send_raw(getattr(self.topics, kind), key_of(kind, payload), raw)

    def send_raw(self, topic: str, key: str | None, value: bytes) -> None:
        """Produce bytes as they are (no validation): for replays and deliberately bad events.

        Waits while the local queue is full; raises `KafkaUnreachable` if no broker answers."""
        encoded_key = None if key is None else key.encode()
        while True:
            try:
                self._producer.produce(topic, value, encoded_key, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let deliveries drain it
                self._check_reachable()
        self.sent += 1
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every queued message; returns how many are still queued after `timeout`.

        Raises `KafkaUnreachable` when no broker answered for `connect_timeout_s`, and
        `DeliveryFailed` (once per batch of failures) when there is no `on_delivery`."""
        try:
            remaining = self._wait(timeout)
        except KafkaUnreachable as unreachable:
            self._fail(unreachable)
            return self.pending
        if self._failures:
            failures, self._failures = self._failures, []
            self._fail(DeliveryFailed(failures))
        return remaining

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then give up on whatever is still queued: every event ends delivered or
        reported. Raises `DeliveryFailed` with the count of events not delivered (or hands it
        to `on_error`); `KafkaUnreachable` when no broker answered."""
        unreachable = None
        try:
            self._wait(timeout)
        except KafkaUnreachable as failure:
            unreachable = failure
        abandoned = self._discard()
        kept, self._failures = self._failures, []
        undelivered = self.sent - self.delivered
        if unreachable is not None:
            self._fail(KafkaUnreachable(self.bootstrap_servers, undelivered, kept))
        elif kept or abandoned:
            self._fail(DeliveryFailed(kept, undelivered))

    def __enter__(self) -> Personify:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if isinstance(exc, DeliveryFailed):  # it already tells what was not delivered
            self._discard()
            return
        self.close()

    @property
    def pending(self) -> int:
        """Events sent that have no delivery report yet."""
        return self.sent - self.delivered - self.failed

    def _wait(self, timeout: float) -> int:
        """Flush in short steps until nothing is queued, `timeout` passed, or no broker has
        answered for `connect_timeout_s` (`KafkaUnreachable`)."""
        deadline = time.monotonic() + timeout
        while True:
            step = max(0.0, min(_WAIT_STEP_S, deadline - time.monotonic()))
            remaining = self._producer.flush(step)
            if remaining == 0 or time.monotonic() >= deadline:
                return remaining
            self._check_reachable()

    def _check_reachable(self) -> None:
        """`KafkaUnreachable` once every broker has been down for `connect_timeout_s` and a
        metadata request confirms it (a broker that came back clears the watch)."""
        if self._watch.down_for() < self._connect_timeout_s:
            return
        try:
            self._producer.list_topics(timeout=min(1.0, self._connect_timeout_s))
        except KafkaException:
            raise KafkaUnreachable(self.bootstrap_servers, self.pending) from None
        self._watch.answered()

    def _discard(self) -> int:
        """Purge what is still queued (each gets an `UNSENT_AT_CLOSE` report); returns how many,
        and stops the exit hook."""
        atexit.unregister(self._flush_at_exit)
        queued = self.pending
        if len(self._producer):
            self._producer.purge()
            self._producer.flush(0)
        return queued

    def _fail(self, failure: DeliveryFailed) -> None:
        if self._on_error is None:
            raise failure
        self._on_error(failure)

    def _broker_error(self, error: KafkaError) -> None:
        self._watch.on_error(error)
        if self._their_error_cb is not None:
            self._their_error_cb(error)

    def _send_built(self, payload: dict[str, Any]) -> str:
        self.send_event(payload)
        return payload["event_id"]

    def _ts(self, ts: int | str | None) -> int | str:
        return self._clock_ms() if ts is None else ts

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        key = message.key()
        report = DeliveryReport(
            topic=message.topic(),
            key=None if key is None else key.decode(errors="replace"),
            partition=message.partition(),
            offset=message.offset(),
            error=None if error is None else _describe(error),
        )
        if error is None:
            self.delivered += 1
            self._watch.answered()
        else:
            self.failed += 1
        if self._on_delivery is not None:
            self._on_delivery(report)
        elif error is not None:
            self._failures.append(report)

    def _flush_at_exit(self) -> None:
        remaining = self._producer.flush(10.0)
        if remaining:
            log.error("%d event(s) not delivered at exit; call close() to be told earlier (%s)",
                      remaining, unreachable_message(self.bootstrap_servers))


def _describe(error: KafkaError) -> str:
    return UNSENT_AT_CLOSE if error.code() in _PURGED else error.str()
