"""The query API on the worker, answered from Redis so any worker can answer for any person."""

from __future__ import annotations

import faust
import orjson
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from processors.views import BEST_CUSTOMERS, person_credits_key, person_key
from streams.context import Pipeline

MAX_LIMIT = 1000


def register(app: faust.App, pipeline: Pipeline, guard) -> None:
    redis = pipeline.views.client

    def error(view: View, status: int, code: str, message: str) -> Response:
        return view.json({"error": code, "message": message}, status=status)

    @app.page("/persons/{person_id}")
    class Person(View):
        async def get(self, request: Request, person_id: str) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            try:
                profile = await redis.get(person_key(person_id))
                credits = await redis.hvals(person_credits_key(person_id))
            except RedisError:
                return error(self, 503, "views_unavailable", "Redis is not reachable; retry")
            if profile is None:
                return error(self, 404, "unknown_person", f"no person {person_id!r}")
            records = sorted((orjson.loads(c) for c in credits),
                             key=lambda c: (c["revenue_ts"], c["revenue_event_id"], c["model"]))
            return self.json({**orjson.loads(profile), "credits": records})

    @app.page("/reports/best-customers")
    class BestCustomers(View):
        async def get(self, request: Request) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            raw = request.query.get("limit", "10")
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
                return error(self, 400, "bad_limit", f"limit must be 1..{MAX_LIMIT}")
            try:
                ranked = await redis.zrevrange(BEST_CUSTOMERS, 0, int(raw) - 1, withscores=True)
                profiles = await redis.mget([person_key(p.decode()) for p, _ in ranked]) \
                    if ranked else []
            except RedisError:
                return error(self, 503, "views_unavailable", "Redis is not reachable; retry")
            rows = []
            for rank, ((person, _), profile) in enumerate(zip(ranked, profiles, strict=True), 1):
                record = orjson.loads(profile) if profile else {}
                rows.append({"rank": rank, "person_id": person.decode(),
                             "lifetime_revenue_minor": record.get("lifetime_revenue_minor"),
                             "reporting_currency": record.get("reporting_currency"),
                             "segment": record.get("segment"),
                             "acquisition_channel": record.get("acquisition_channel"),
                             "mrr_minor": record.get("mrr_minor")})
            return self.json({"customers": rows})
