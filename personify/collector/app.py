"""The collector's HTTP application: routes, limits, errors as JSON, CORS, metrics.

Stateless: every request is read, validated (`processors.intake`), produced and acknowledged
on its own, so any number of collectors run behind a load balancer. Errors are JSON
`{"error": code, "message": ...}` like the worker's API.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from personify.collector.access import CORS_PREFLIGHT_HEADERS, Unauthorized, authenticate
from personify.collector.config import CollectorConfig, Source
from personify.collector.delivery import Outgoing, Sink, Undelivered
from personify.collector.metrics import ROUTES, CollectorMetrics
from processors.dead_letters import HTTP_OFFSET, HTTP_PARTITION, HttpOrigin, dead_letter_record
from processors.intake import (
    Accepted,
    Outcome,
    Refused,
    batch_items,
    parse_body,
    read_item,
    single_item,
)
from schemas.contract import INPUT_SCHEMAS, headers_for
from streams.topology import Topics

log = logging.getLogger("personify.collector")

SNIPPET = Path(__file__).resolve().parent / "static" / "personify.js"
SEGMENT_TYPES = {"track": "track", "t": "track", "page": "page", "p": "page",
                 "identify": "identify", "i": "identify", "screen": "screen", "s": "screen",
                 "group": "group", "g": "group", "alias": "alias", "a": "alias"}
"""`/v1/<type>` routes: Segment's HTTP API names and analytics.js's one-letter ones."""
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               408: "request_timeout", 413: "payload_too_large"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _request_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Collector:
    """Everything a request needs; built once at start-up."""

    config: CollectorConfig
    topics: Topics
    delivery: Sink
    metrics: CollectorMetrics
    clock_ms: Callable[[], int] = _now_ms
    new_request_id: Callable[[], str] = _request_id
    snippet: bytes = field(default_factory=SNIPPET.read_bytes)


def build_app(collector: Collector) -> web.Application:
    app = web.Application(client_max_size=collector.config.max_body_bytes,
                          middlewares=[_middleware(collector)])
    events = _Events(collector)
    app.router.add_post("/v1/batch", events.batch)
    app.router.add_post("/v1/{type}", events.single)
    app.router.add_route("OPTIONS", "/v1/{tail:.*}", events.preflight)
    app.router.add_get("/personify.js", events.snippet)
    app.router.add_get("/health", events.health)
    app.router.add_get("/metrics", events.exposition)
    return app


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status,
                             headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _middleware(collector: Collector) -> Any:
    """Every answer: HTTP errors as JSON, CORS headers for allowed origins, metrics."""
    metrics = collector.metrics

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
        except Exception:  # a defect: answer, log, keep serving
            log.exception("collector: unexpected error on %s %s", request.method, request.path)
            response = error(500, "internal_error", "the collector failed on this request")
        origin = request.headers.get("Origin")
        if origin and request.path.startswith("/v1/") and collector.config.origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        route = _route_label(request)
        metrics.requests.labels(route, str(response.status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    name = resource.canonical if resource is not None else "other"
    return name if name in ROUTES else "other"


class _Events:
    def __init__(self, collector: Collector) -> None:
        self.c = collector

    async def batch(self, request: web.Request) -> web.Response:
        return await self._post(request, None)

    async def single(self, request: web.Request) -> web.Response:
        kind = SEGMENT_TYPES.get(request.match_info["type"])
        if kind is None:
            return error(404, "not_found", f"no route {request.path}: post to /v1/batch or "
                         f"/v1/{{{','.join(t for t in SEGMENT_TYPES if len(t) > 1)}}}")
        return await self._post(request, kind)

    async def preflight(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        if not self.c.config.origin_allowed(origin):
            return error(403, "origin_not_allowed", f"origin {origin[:200]!r} may not post here")
        return web.Response(status=204, headers={**CORS_PREFLIGHT_HEADERS,
                                                 "Access-Control-Allow-Origin": origin,
                                                 "Vary": "Origin"})

    async def snippet(self, request: web.Request) -> web.Response:
        return web.Response(body=self.c.snippet, content_type="application/javascript",
                            charset="utf-8", headers={"Cache-Control": "public, max-age=300"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def exposition(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.c.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _post(self, request: web.Request, route_type: str | None) -> web.Response:
        config = self.c.config
        origin = request.headers.get("Origin")
        if origin and not config.origin_allowed(origin):
            return error(403, "origin_not_allowed", f"origin {origin[:200]!r} may not post here")
        if (request.content_length or 0) > config.max_body_bytes:
            return error(413, "payload_too_large",
                         f"the body is {request.content_length} bytes, the limit is "
                         f"{config.max_body_bytes}: send smaller batches")
        try:
            body = await asyncio.wait_for(request.read(), timeout=config.body_timeout_s)
        except TimeoutError:
            return error(408, "request_timeout",
                         f"the body did not arrive within {config.body_timeout_s:g} s")
        document = parse_body(body)
        try:
            source = authenticate(request.headers.get("Authorization"), document,
                                  config.sources)
        except Unauthorized as exc:
            return error(401, "unauthorized", str(exc),
                         **{"WWW-Authenticate": 'Basic realm="personify"'})
        request_id = self.c.new_request_id()
        outcomes = self._outcomes(document, body, route_type, source)
        try:
            await self.c.delivery.send(self._outgoing(outcomes, request.path, source, request_id))
        except Undelivered as exc:
            log.warning("collector: request %s not stored: %s", request_id, exc)
            return error(503, "broker_unavailable",
                         "the events could not be stored; retry later (a retry is safe: "
                         "event ids make copies duplicates the pipeline drops)",
                         **{"Retry-After": str(config.retry_after_s), "X-Request-Id": request_id})
        self._count(outcomes)
        headers = {"X-Request-Id": request_id}
        if isinstance(outcomes, _WholeBody):
            refused = outcomes[0]
            return web.json_response({"error": str(refused.reason), "message": refused.message,
                                      "request_id": request_id}, status=400, headers=headers,
                                     dumps=_dumps)
        return web.json_response(_summary(outcomes, request_id), headers=headers, dumps=_dumps)

    def _outcomes(self, document: Any, body: bytes, route_type: str | None,
                  source: Source) -> list[Outcome] | _WholeBody:
        if isinstance(document, Refused):
            return _WholeBody([document])
        if route_type is None:
            items = batch_items(document, body)
            if isinstance(items, Refused):
                return _WholeBody([items])
        else:
            items = [single_item(document, route_type)]
        now_ms = self.c.clock_ms()
        return [read_item(item, allowed=source.sends, now_ms=now_ms, rules=self.c.config.rules)
                for item in items]

    def _outgoing(self, outcomes: list[Outcome], path: str, source: Source,
                  request_id: str) -> list[Outgoing]:
        topics, now_ms = self.c.topics, self.c.clock_ms()
        messages = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Accepted):
                messages.append(Outgoing(_TOPIC_FIELDS[outcome.kind](topics),
                                         outcome.key.encode(), outcome.value,
                                         headers_for(INPUT_SCHEMAS[outcome.kind])))
                continue
            record = dead_letter_record(
                raw=outcome.original, topic=f"http:{path}", partition=HTTP_PARTITION,
                offset=HTTP_OFFSET, reason=outcome.reason, message=outcome.message,
                ts_ms=now_ms, http=HttpOrigin(source.name, request_id, index))
            messages.append(Outgoing(topics.dead_letters, None, orjson.dumps(record),
                                     headers_for(record["schema"])))
        return messages

    def _count(self, outcomes: list[Outcome]) -> None:
        metrics = self.c.metrics
        for outcome in outcomes:
            if isinstance(outcome, Accepted):
                metrics.accepted.labels(INPUT_SCHEMAS[outcome.kind]).inc()
            else:
                metrics.rejected.labels(str(outcome.reason)).inc()


class _WholeBody(list):
    """The whole body refused as one item (not JSON, not a batch): answered 400, not 200."""


_TOPIC_FIELDS: dict[str, Callable[[Topics], str]] = {
    "page_view": lambda topics: topics.page_views,
    "signup": lambda topics: topics.signups,
    "billing": lambda topics: topics.billing,
    "spend": lambda topics: topics.spend,
}


def _summary(outcomes: list[Outcome], request_id: str) -> dict[str, Any]:
    results = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Accepted):
            results.append({"index": index, "event_id": outcome.event_id, "status": "accepted"})
        else:
            results.append({"index": index, "event_id": outcome.event_id, "status": "rejected",
                            "reason": str(outcome.reason), "message": outcome.message})
    accepted = sum(1 for result in results if result["status"] == "accepted")
    return {"request_id": request_id, "accepted": accepted,
            "rejected": len(results) - accepted, "results": results}
