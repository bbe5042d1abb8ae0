"""The API's ideal customer profile equals the report's, figure for figure, from the same
profiles: through the real broker, worker and Redis, behind the API token."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson

from readmodels.icp import icp_as_dict
from readmodels.report import CreditBook, build_report
from tests.chaos.test_kills import Expected, _simulate, send
from tests.integration.test_customer_value import profiles_through_the_pipeline
from tests.integration.test_serving_views import (
    _get,
    redis_server,  # noqa: F401 - a fixture
)

TOKEN = "s3cret"


def test_the_apis_ideal_customer_profile_is_the_reports(
        settings, start_worker, redis_server, tmp_path):  # noqa: F811
    settings = replace(settings, redis_url=redis_server.url, api_token=TOKEN)
    lines = _simulate(tmp_path, "log", 1_500, 5)
    expected = Expected(lines)
    worker = start_worker(settings)
    assert _get(worker, "/reports/icp")[0] == 401
    send(settings, lines).join()

    icp = build_report(profiles_through_the_pipeline(settings, expected), CreditBook(),
                       models=("first_touch",), currency="USD", exponent=2).icp
    assert icp.top_customers >= 5 and any(row.top for row in icp.traits)  # a story worth checking
    wanted = {"reporting_currency": "USD", **orjson.loads(orjson.dumps(icp_as_dict(icp)))}
    deadline, served = time.monotonic() + 60, None
    while time.monotonic() < deadline:  # the views are published every 5 s
        status, served = _get(worker, "/reports/icp", token=TOKEN)
        if status == 200 and served == wanted:
            break
        time.sleep(1)
    assert served == wanted
