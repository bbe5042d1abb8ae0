"""HTTP views on the worker: /health, /ready, /metrics (JSON errors, optional bearer token)."""

from __future__ import annotations

import hmac

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.context import Pipeline


def register(app: faust.App, pipeline: Pipeline) -> None:
    token = pipeline.settings.api_token

    expected = f"Bearer {token}".encode()

    def unauthorized(view: View, request: Request) -> Response | None:
        """A 401 unless the request bears the token (compared in constant time)."""
        given = request.headers.get("Authorization", "").encode(errors="replace")
        if token and not hmac.compare_digest(given, expected):
            return view.json({"error": "unauthorized",
                              "message": "send Authorization: Bearer <PERSONIFY_API_TOKEN>"},
                             status=401)
        return None

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            if (denied := unauthorized(self, request)) is not None:
                return denied
            assigned = len(app.assignor.assigned_actives())
            recovering = not app.tables.recovery.completed.is_set()
            broker = pipeline.status.broker_reachable
            ready = app.rebalancing is False and not recovering and broker
            return self.json({"ready": ready, "assigned_partitions": assigned,
                              "recovering": recovering, "broker_reachable": broker},
                             status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            if (denied := unauthorized(self, request)) is not None:
                return denied
            body = generate_latest(pipeline.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    from streams import api

    api.register(app, pipeline, unauthorized)
