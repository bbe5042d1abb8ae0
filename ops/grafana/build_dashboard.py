"""Builds the Grafana dashboard `dashboards/personify.json`:
`.venv/bin/python ops/grafana/build_dashboard.py [--reporting-currency EUR]`.

Panels are declared as data (title, kind, queries); ids and layout are computed, so the JSON
stays consistent when panels move. tests/unit/test_ops.py checks that the committed JSON is this
script's output and that every query is valid PromQL over metrics the worker exports.

Business gauges are computed per worker from the partitions it owns, so they are summed across
workers; ratios are taken after summing (an average of per-worker averages would be wrong).
The worker exports amounts in minor units of the reporting currency (integers, exact); every
money query divides by 10^exponent of that currency (100 for USD) and shows major units with
Grafana's unit of the currency. The dashboard names no datasource uid: it has a `datasource`
variable, and `__inputs` asks for a Prometheus datasource when it is imported.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from processors.aggregates import WINDOWS
from processors.money import default_currency_table

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "personify.json"
DATASOURCE_INPUT = "DS_PROMETHEUS"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
"""Every panel and query: the datasource the `datasource` variable selects."""
GRID_WIDTH, PANEL_HEIGHT = 24, 8
DEFAULT_MODEL, DEFAULT_WINDOW = "linear", "30d"
REPORTING_CURRENCY = "USD"
"""The pipeline's default (config/personify.example.toml `reporting_currency`)."""
MONEY = "money"
"""A panel whose amounts are minor units of the reporting currency, shown in major units."""
GRAFANA_CURRENCY_UNITS = frozenset({
    "USD", "GBP", "EUR", "JPY", "RUB", "UAH", "BRL", "DKK", "ISK", "NOK", "SEK", "CZK", "CHF",
    "PLN", "ZAR", "INR", "KRW", "IDR", "PHP", "VND", "TRY", "MYR", "BGN", "ILS"})
"""Currencies with a unit of Grafana's own (`currencyUSD`); others are prefixed with the code."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = True
    table: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str
    queries: tuple[Query, ...]
    width: int = 8
    unit: str = MONEY
    description: str = ""
    transformations: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _by_channel(expr: str) -> Query:
    return Query(f"sum by (channel) ({expr})", "{{channel}}")


def _series(expr: str, legend: str) -> Query:
    return Query(expr, legend, instant=False)


def _matrix(expr: str) -> Query:
    return Query(f"sum by (channel, segment) ({expr})", table=True)


CHANNEL_BY_SEGMENT = ({"id": "groupingToMatrix", "options": {
    "columnField": "segment", "rowField": "channel", "valueField": "Value"}},)
ATTRIBUTED = 'personify_attributed_revenue_minor_units{model="$model", window="$window"}'
LIFETIME_REVENUE = 'personify_revenue_minor_units{window="all"}'
CUSTOMERS_EVER = 'personify_new_customers{window="all"}'
CORRECTIONS = "rate(personify_credit_corrections_total[5m])"
EMITTED = "rate(personify_credits_emitted_total[5m])"
"""Credits first asserted (revision 1), one per revenue event and model."""

ROWS = (
    Row("Revenue by channel and model", (
        Panel("Attributed revenue by channel — $model, $window", "bargauge",
              (_by_channel(ATTRIBUTED),),
              description="Revenue credited to the channels of each customer's journey."),
        Panel("Attributed revenue by model — $window", "bargauge",
              (Query('sum by (model) (personify_attributed_revenue_minor_units'
                     '{window="$window"})', "{{model}}"),),
              description="Every model splits the same revenue: the bars are equal unless "
                          "a model was added or removed within the window."),
        Panel("Revenue by acquisition channel — $window", "bargauge",
              (_by_channel('personify_revenue_minor_units{window="$window"}'),),
              description="Payments minus refunds, by the channel of each customer's first "
                          "touch."),
        Panel("Attributed revenue by channel over time — $model, $window", "timeseries",
              (replace(_by_channel(ATTRIBUTED), instant=False),),
              width=24),
    )),
    Row("Channel × segment", (
        Panel("Attributed revenue, channel × segment — $model, $window", "table",
              (_matrix(ATTRIBUTED),), width=12, transformations=CHANNEL_BY_SEGMENT),
        Panel("New customers, channel × segment — $window", "table",
              (_matrix('personify_new_customers{window="$window"}'),), width=12,
              unit="short", transformations=CHANNEL_BY_SEGMENT),
    )),
    Row("Customers and lifetime value", (
        Panel("New customers by acquisition channel — $window", "bargauge",
              (_by_channel('personify_new_customers{window="$window"}'),), unit="short"),
        Panel("Average lifetime value by acquisition channel", "bargauge",
              (Query(f"sum by (channel) ({LIFETIME_REVENUE})"
                     f" / (sum by (channel) ({CUSTOMERS_EVER}) > 0)", "{{channel}}"),),
              description="Lifetime revenue over customers, summed across workers and "
                          "segments before dividing."),
        Panel("Time from first touch to conversion by acquisition channel", "bargauge",
              tuple(Query(f"histogram_quantile({q}, sum by (channel, le) "
                          "(personify_time_to_conversion_seconds_bucket))",
                          f"{{{{channel}}}} {name}") for q, name in
                    ((0.5, "median"), (0.9, "90th percentile"))),
              unit="s", description="All customers with a first touch; estimated within "
                                    "the histogram's buckets (1 h, 1 d, 7 d, 30 d, 90 d)."),
    )),
    Row("Recurring revenue", (
        Panel("MRR by acquisition channel", "bargauge",
              (_by_channel("personify_mrr_minor_units"),)),
        Panel("MRR movements by kind — $window", "bargauge",
              (Query('sum by (kind) (personify_mrr_movement_minor_units{window="$window"})',
                     "{{kind}}"),),
              description="Signed: contraction and churn are negative."),
        Panel("MRR", "timeseries",
              (_series("sum(personify_mrr_minor_units)", "MRR"),)),
    )),
    Row("Revenue concentration", (
        Panel("Revenue share of the top 20 % of customers", "stat",
              (Query("max(personify_top_customers_revenue_share_ratio)", "share"),),
              unit="percentunit",
              description="Every worker reads the same leaderboard, so the workers agree: "
                          "max, not sum. Refreshed every 30 s."),
    )),
    Row("Late events and corrections", (
        Panel("Credit corrections per 1,000 revenue events", "timeseries",
              (_series(f"1000 * sum by (model) ({CORRECTIONS}) / (sum by (model) ({EMITTED}) > 0)",
                       "{{model}}"),
               _series(f"1000 * sum({CORRECTIONS}) / (sum({EMITTED}) > 0)", "all models")),
              unit="short",
              description="Credits restated (a retract and the next revision's assert) per "
                          "1,000 credits first asserted, by model: how often late touches, "
                          "links, signups and earlier payments change what was published."),
        Panel("Late events /s by outcome", "timeseries",
              (_series("sum by (outcome) (rate(personify_late_events_total[5m]))",
                       "{{outcome}}"),), unit="short",
              description="Events that arrived after a credit they change: corrected, or "
                          "beyond the restatement horizon (the credit is final; only later "
                          "revenue sees them)."),
        Panel("Credit corrections /s by cause", "timeseries",
              (_series(f"sum by (cause) ({CORRECTIONS})", "{{cause}}"),), unit="short",
              description="Exact counts of credits restated, by the late fact that changed "
                          "them. Nothing is held back: every credit is published at once and "
                          "corrected by a retract and the next revision's assert."),
        Panel("Duplicate input events /s by topic", "timeseries",
              (_series("sum by (topic) (rate(personify_duplicate_events_total[5m]))",
                       "{{topic}}"),), unit="short",
              description="Events whose (topic, event_id) was already accepted: dropped and "
                          "counted, the normal result of a producer's retry."),
    )),
    Row("Pipeline health", (
        Panel("Input events read /s by topic", "timeseries",
              (_series("sum by (topic) (rate(personify_events_consumed_total[5m]))",
                     "{{topic}}"),), unit="short"),
        Panel("Dead letters /s by reason", "timeseries",
              (_series("sum by (reason) (rate(personify_dead_letters_total[5m]))",
                     "{{reason}}"),), unit="short"),
        Panel("Consumer lag by topic", "timeseries",
              (_series("sum by (topic) (personify_consumer_lag_messages)", "{{topic}}"),),
              unit="short",
              description="Messages behind the end of the owned partitions (committed "
                          "offsets)."),
        Panel("Event-time latency p99 by topic (event time → processed)", "timeseries",
              (_series("histogram_quantile(0.99, sum by (topic, le) "
                     "(rate(personify_processing_latency_seconds_bucket[5m])))",
                     "{{topic}}"),), unit="s",
              description="Revenue events, from their own time stamp: a replay or backfill of "
                          "old events lands beyond the last bucket (1 d); the processing time "
                          "beside it says how fast the worker is."),
        Panel("Processing time by stage (take read → outputs delivered)", "timeseries",
              tuple(_series(f"histogram_quantile({q}, sum by (stage, le) "
                            "(rate(personify_take_seconds_bucket[5m])))", f"{{{{stage}}}} {name}")
                    for q, name in ((0.5, "median"), (0.99, "p99"))), unit="s",
              description="Wall-clock time from a stage reading a take (up to 2,000 input "
                          "events or 1,000 internal batches) to its outputs being delivered "
                          "and its state written: independent of how old the events are."),
        Panel("Identity stitching /s", "timeseries",
              (_series("sum(rate(personify_touches_stitched_total[5m]))", "stitched"),
               _series("sum by (reason) (rate(personify_identity_link_refusals_total[5m]))",
                     "link refused: {{reason}}"),
               _series("sum by (reason) (rate(personify_touches_dropped_total[5m]))",
                     "touch dropped: {{reason}}")),
              unit="short"),
        Panel("Credits emitted /s by model", "timeseries",
              (_series("sum by (model) (rate(personify_credits_emitted_total[5m]))",
                     "{{model}}"),), unit="short"),
        Panel("Serving views", "timeseries",
              (_series("min(personify_redis_up)", "Redis up (all workers)"),
               _series("sum(personify_view_writes_pending)", "writes waiting for Redis")),
              unit="short"),
    )),
)


@dataclass(frozen=True)
class Money:
    """How money panels show minor units of the reporting currency in major units."""

    divisor: int
    unit: str
    decimals: int

    @classmethod
    def of(cls, currency: str) -> Money:
        exponent = default_currency_table().currencies[currency].exponent
        unit = (f"currency{currency}" if currency in GRAFANA_CURRENCY_UNITS
                else f"prefix:{currency} ")
        return cls(10 ** exponent, unit, exponent)

    def convert(self, expr: str) -> str:
        return f"({expr}) / {self.divisor}" if self.divisor != 1 else expr


def _target(query: Query, ref_id: str, money: Money | None) -> dict:
    expr = money.convert(query.expr) if money else query.expr
    target = {"refId": ref_id, "datasource": DATASOURCE, "expr": expr,
              "legendFormat": query.legend, "instant": query.instant,
              "range": not query.instant}
    if query.table:
        target["format"] = "table"
    return target


def _panel(panel: Panel, panel_id: int, x: int, y: int, money: Money) -> dict:
    converted = money if panel.unit == MONEY else None
    defaults: dict = {"unit": panel.unit}
    if converted:
        defaults = {"unit": money.unit, "decimals": money.decimals}
    built = {
        "id": panel_id, "type": panel.kind, "title": panel.title,
        "description": panel.description, "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [_target(q, chr(ord("A") + i), converted)
                    for i, q in enumerate(panel.queries)],
    }
    if panel.transformations:
        built["transformations"] = list(panel.transformations)
    return built


def _panels(money: Money) -> list[dict]:
    """Rows and their panels, left to right, wrapping at the grid width."""
    panels: list[dict] = []
    y = 0
    for row in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row.title,
                       "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        y, x = y + 1, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                y, x = y + PANEL_HEIGHT, 0
            panels.append(_panel(panel, len(panels) + 1, x, y, money))
            x += panel.width
        y += PANEL_HEIGHT
    return panels


def _variables() -> list[dict]:
    model_query = "label_values(personify_attributed_revenue_minor_units, model)"
    from_input = f"${{{DATASOURCE_INPUT}}}"
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource",
         "query": "prometheus", "refresh": 1, "regex": "", "hide": 0,
         "current": {"text": from_input, "value": from_input}},
        {"name": "model", "label": "Attribution model", "type": "query",
         "datasource": DATASOURCE, "query": model_query, "definition": model_query,
         "refresh": 2, "sort": 1, "multi": False, "includeAll": False,
         "current": {"text": DEFAULT_MODEL, "value": DEFAULT_MODEL}},
        {"name": "window", "label": "Window (event time)", "type": "custom",
         "query": ",".join(WINDOWS), "multi": False, "includeAll": False,
         "current": {"text": DEFAULT_WINDOW, "value": DEFAULT_WINDOW},
         "options": [{"text": w, "value": w, "selected": w == DEFAULT_WINDOW}
                     for w in WINDOWS]},
    ]


def dashboard(reporting_currency: str = REPORTING_CURRENCY) -> dict:
    money = Money.of(reporting_currency)
    return {
        "__inputs": [{"name": DATASOURCE_INPUT, "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus",
                      "description": "The Prometheus that scrapes the Personify workers"}],
        "__requires": [{"type": "datasource", "id": "prometheus", "name": "Prometheus",
                        "version": "1.0.0"}],
        "uid": "personify-overview",
        "title": "Personify — revenue and pipeline",
        "description": f"Amounts in {reporting_currency} (major units: the worker's minor "
                       f"units divided by {money.divisor}); windows are event time, ending "
                       "at the newest event.",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["personify"],
        "templating": {"list": _variables()},
        "panels": _panels(money),
    }


def render(reporting_currency: str = REPORTING_CURRENCY) -> str:
    return json.dumps(dashboard(reporting_currency), indent=2, ensure_ascii=False) + "\n"


def queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query, template variables at their default values."""
    defaults = {v["name"]: v["current"]["value"] for v in board["templating"]["list"]}

    def resolve(text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m[1], m[0]), text)

    return [(resolve(panel["title"]), resolve(target["expr"]))
            for panel in board["panels"] for target in panel.get("targets", ())]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reporting-currency", default=REPORTING_CURRENCY,
                        help="the pipeline's reporting_currency (default USD)")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.out.write_text(render(args.reporting_currency.upper()))
    print(f"wrote {args.out} (amounts in {args.reporting_currency.upper()})")
