"""The query API on the worker, answered from Redis so any worker can answer for any person."""

from __future__ import annotations

import asyncio
import re

import faust
import orjson
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from processors.aggregates import (
    WINDOWS,
    Cells,
    bridge_movements,
    channel_segment_report,
    ltv_by_channel,
    mrr_movements,
    sum_cells,
)
from readmodels.icp import icp_as_dict, ideal_customer_profile
from readmodels.mrr_bridge import bridge
from readmodels.report import MIN_CUSTOMERS, TOP_PERCENT
from readmodels.retention import as_dict, retention_of
from readmodels.serving_views import BEST_CUSTOMERS, PREFIX, person_credits_key, person_key
from readmodels.spend_return import spend_answer
from streams.context import Pipeline

MAX_LIMIT = 1000
LIMIT = re.compile(r"[0-9]{1,4}")
"""ASCII digits only: str.isdigit() takes '²', which int() then refuses."""
AS_OF = re.compile(r"[0-9]{1,15}")
"""Epoch milliseconds, like every time in the contract."""
MGET_BATCH = 1000


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

    models = pipeline.config.attribution.models
    currency = pipeline.config.attribution.reporting_currency

    async def summed_cells(view: View, window: str) -> Cells | Response:
        """Every partition's aggregate window from Redis, summed (or the error to answer)."""
        try:
            keys = [key async for key in redis.scan_iter(f"{PREFIX}:aggregates:*")]
            reports = await redis.mget(keys) if keys else []
        except RedisError:
            return error(view, 503, "views_unavailable", "Redis is not reachable; retry")
        return sum_cells(orjson.loads(r)[window] for r in reports if r)

    async def guarded_cells(view: View, request: Request, window: str) -> Cells | Response:
        """The summed cells of `window`, or the answer to give instead (401, 503)."""
        if (denied := guard(view, request)) is not None:
            return denied
        return await summed_cells(view, window)

    @app.page("/reports/mrr-bridge")
    class MrrBridge(View):
        """MRR by calendar month, opening to closing, of every acquisition channel and segment
        or of the `channel` and `segment` asked for."""

        async def get(self, request: Request) -> Response:
            cells = await guarded_cells(self, request, "all")
            if isinstance(cells, Response):
                return cells
            channel, segment = request.query.get("channel"), request.query.get("segment")
            months = bridge(bridge_movements(cells, channel=channel, segment=segment))
            return self.json({
                "channel": channel, "segment": segment, "reporting_currency": currency,
                "months": [{"month": m.month, "opening_minor": m.opening, "new_minor": m.new,
                            "expansion_minor": m.expansion,
                            "reactivation_minor": m.reactivation,
                            "contraction_minor": m.contraction, "churn_minor": m.churn,
                            "closing_minor": m.closing} for m in months]})

    async def current_profiles(view: View) -> list[bytes] | Response:
        """Every person's profile from Redis, raw (or the error to answer)."""
        try:
            keys = [key async for key in redis.scan_iter(person_key("*"), count=MGET_BATCH)]
            values = []
            for start in range(0, len(keys), MGET_BATCH):
                values += await redis.mget(keys[start:start + MGET_BATCH])
        except RedisError:
            return error(view, 503, "views_unavailable", "Redis is not reachable; retry")
        return [value for value in values if value]

    def retention_answer(profiles: list[bytes], as_of_ms: int | None) -> dict:
        return {"reporting_currency": currency, **as_dict(retention_of(
            map(orjson.loads, profiles), min_customers=MIN_CUSTOMERS, as_of_ms=as_of_ms))}

    @app.page("/reports/retention")
    class Retention(View):
        """NRR, GRR and logo retention by conversion cohort, and at 3, 6 and 12 months by
        segment and channel, as of `as_of` (epoch ms) or of the profiles' own clock."""

        async def get(self, request: Request) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            raw = request.query.get("as_of")
            if raw is not None and not AS_OF.fullmatch(raw):
                return error(self, 400, "bad_as_of", "as_of must be epoch milliseconds")
            profiles = await current_profiles(self)
            if isinstance(profiles, Response):
                return profiles
            # every profile is parsed and folded: off the event loop, so the stream keeps going
            answer = await asyncio.to_thread(retention_answer, profiles,
                                             None if raw is None else int(raw))
            return self.json(answer)

    def icp_answer(profiles: list[bytes]) -> dict:
        return {"reporting_currency": currency, **icp_as_dict(ideal_customer_profile(
            map(orjson.loads, profiles), min_customers=MIN_CUSTOMERS, top_percent=TOP_PERCENT))}

    @app.page("/reports/icp")
    class Icp(View):
        """The ideal customer profile: trait values by lift among the top customers, with
        their interval, and the acquisition channels by ICP fit."""

        async def get(self, request: Request) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            profiles = await current_profiles(self)
            if isinstance(profiles, Response):
                return profiles
            # every profile is parsed and folded: off the event loop, so the stream keeps going
            return self.json(await asyncio.to_thread(icp_answer, profiles))

    @app.page("/reports/channels")
    class Channels(View):
        """Attributed revenue by channel × segment for a model and an event-time window, with
        customers, lifetime revenue and MRR by acquisition channel."""

        async def get(self, request: Request) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            model = request.query.get("model", models[0])
            window = request.query.get("window", "all")
            if model not in models:
                return error(self, 400, "bad_model", f"model must be one of {list(models)}")
            if window not in WINDOWS:
                return error(self, 400, "bad_window", f"window must be one of {list(WINDOWS)}")
            cells = await summed_cells(self, window)
            if isinstance(cells, Response):
                return cells
            return self.json({
                "model": model, "window": window,
                "reporting_currency": currency,
                "attributed": [{"channel": r.channel, "segment": r.segment,
                                "revenue_minor": r.revenue_minor}
                               for r in channel_segment_report(cells, model)],
                "acquisition": [{"channel": r.channel, "segment": r.segment,
                                 "customers": r.customers,
                                 "lifetime_revenue_minor": r.lifetime_revenue_minor,
                                 "average_ltv_minor": r.average_ltv_minor}
                                for r in ltv_by_channel(cells)],
                "mrr": [{"channel": r.channel, "segment": r.segment, "mrr_minor": r.mrr_minor,
                         "movements": r.movements, "movement_minor": r.movement_minor}
                        for r in mrr_movements(cells)]})

    @app.page("/reports/best-customers")
    class BestCustomers(View):
        async def get(self, request: Request) -> Response:
            if (denied := guard(self, request)) is not None:
                return denied
            raw = request.query.get("limit", "10")
            if not LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
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

    # ------------------------------------------------------------------ spend and return

    @app.page("/reports/spend")
    class SpendAndReturn(View):
        """CAC, ROAS per model, LTV:CAC and payback by channel, all-time, from the aggregate
        cells (readmodels/spend_return.py: the report's own function)."""

        async def get(self, request: Request) -> Response:
            cells = await guarded_cells(self, request, "all")
            if isinstance(cells, Response):
                return cells
            return self.json(spend_answer(cells, models, currency, MIN_CUSTOMERS))
