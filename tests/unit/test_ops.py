import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ops.grafana import build_dashboard
from personify.stack.debian import ensure_program
from personify.stack.prometheus import RULES, PrometheusServer
from processors.aggregates import WINDOWS
from processors.attribution import MODELS
from processors.validation import NOT_BAD_DATA, REASONS
from streams.aggregate_store import AggregateStore
from streams.business_metrics import BusinessCollector
from streams.metrics import LATE_EVENT_OUTCOMES, create_metrics, zero_known_labels
from streams.topology import Settings

ROOT = Path(__file__).resolve().parents[2]
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
DASHBOARD = build_dashboard.OUTPUT
BOARD = build_dashboard.dashboard()
METRIC_NAME = re.compile(r"\bpersonify_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created")}


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_program("promtool", "prometheus")


def _promtool(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def _exported_series() -> set[str]:
    """Every series name a worker's /metrics can carry, from the very registry it serves."""
    metrics = create_metrics()
    metrics.registry.register(
        BusinessCollector(AggregateStore(None, None).keep_only, MODELS, "USD",
                          owned_partitions=set))
    return {family.name + suffix for family in metrics.registry.collect()
            for suffix in SUFFIXES[family.type]}


def _alert_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _panels() -> list[dict]:
    return [panel for panel in BOARD["panels"] if panel["type"] != "row"]


def test_alert_rules_pass_promtool(promtool):
    _promtool(promtool, "check", "rules", str(RULES))


def test_alerts_fire_and_stay_quiet_as_their_cases_say(promtool):
    _promtool(promtool, "test", "rules", str(ALERT_TESTS))


@pytest.mark.parametrize("token", ["", "s3cret"])
def test_the_config_written_by_stack_up_is_valid_and_never_holds_the_token(
        promtool, tmp_path, token):
    server = PrometheusServer(replace(Settings(), cache_dir=tmp_path, api_token=token))
    config = server.write_config()
    _promtool(promtool, "check", "config", str(config))
    assert ("credentials_file" in config.read_text()) == bool(token)
    if token:
        token_file = config.parent / "worker-token"
        assert "s3cret" not in config.read_text() and token_file.read_text() == "s3cret"
        assert token_file.stat().st_mode & 0o077 == 0


def test_the_compose_config_is_valid_with_the_repository_rules(promtool, tmp_path):
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    _promtool(promtool, "check", "config", str(path))


def test_the_committed_dashboard_is_what_its_generator_builds():
    assert DASHBOARD.read_text() == build_dashboard.render(), (
        "run `.venv/bin/python ops/grafana/build_dashboard.py`")


def _datasource_references(node) -> Iterator[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_references(value)


def test_the_dashboard_imports_anywhere_on_the_prometheus_chosen_at_import():
    committed = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(
        (ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert committed["schemaVersion"] == 39
    (needed,) = committed["__inputs"]
    assert (needed["type"], needed["pluginId"]) == ("datasource", "prometheus")
    variables = {v["name"]: v for v in committed["templating"]["list"]}
    chooser = variables["datasource"]
    assert (chooser["type"], chooser["query"]) == ("datasource", "prometheus")
    assert chooser["current"]["value"] == "${" + needed["name"] + "}"
    references = list(_datasource_references(committed))
    assert len(references) > len(_panels())
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in references)
    assert provisioned["datasources"][0]["uid"] not in DASHBOARD.read_text()


MONEY_METRIC = re.compile(r"personify_\w+_minor_units")


def _money_targets(board: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in board["panels"] if panel["type"] != "row"
            for target in panel["targets"] if MONEY_METRIC.search(target["expr"])]


@pytest.mark.parametrize(("currency", "divisor", "unit", "decimals"), [
    ("USD", 100, "currencyUSD", 2), ("EUR", 100, "currencyEUR", 2),
    ("JPY", 1, "currencyJPY", 0), ("KWD", 1000, "prefix:KWD ", 3)])
def test_every_money_panel_shows_major_units_of_the_reporting_currency(
        currency, divisor, unit, decimals):
    board = (json.loads(DASHBOARD.read_text()) if currency == "USD"
             else build_dashboard.dashboard(currency))
    money = _money_targets(board)
    assert len({panel["id"] for panel, _ in money}) >= 9
    for panel, target in money:
        assert panel["fieldConfig"]["defaults"] == {"unit": unit, "decimals": decimals}
        assert target["expr"].endswith(f") / {divisor}") == (divisor != 1), target["expr"]
    for panel in board["panels"]:
        if panel["type"] != "row" and "minor" not in str(panel["targets"]):
            assert panel["fieldConfig"]["defaults"]["unit"] != unit, panel["title"]


def test_a_money_panel_reads_usd_240_505_48_from_24_050_548_minor_units(promtool, tmp_path):
    (by_channel,) = _panel_exprs("Revenue by acquisition channel — $window")
    expr = by_channel.replace("$window", "30d")
    series = ('personify_revenue_minor_units'
              '{instance="w%d",channel="Email",segment="%s",window="30d"}')
    cases = {"tests": [{
        "interval": "1m",
        "input_series": [{"series": series % (1, "SMB"), "values": "24000000x5"},
                         {"series": series % (2, "Enterprise"), "values": "50548x5"}],
        "promql_expr_test": [{"expr": expr, "eval_time": "2m", "exp_samples": [
            {"labels": '{channel="Email"}', "value": 240505.48}]}],
    }]}
    path = tmp_path / "money_test.yml"
    path.write_text(yaml.safe_dump(cases))
    _promtool(promtool, "test", "rules", str(path))


def test_no_panel_reads_an_estimate_and_corrections_are_shown_by_cause():
    exprs = [expr for _, expr in build_dashboard.queries(BOARD)]
    assert not any("personify_table_keys" in expr for expr in exprs)
    (by_cause,) = _panel_exprs("Credit corrections /s by cause")
    assert by_cause == "sum by (cause) (rate(personify_credit_corrections_total[5m]))"


def test_processing_time_sits_beside_event_time_latency():
    panels = _panels()
    titles = [panel["title"] for panel in panels]
    event_time = titles.index("Event-time latency p99 by topic (event time → processed)")
    processing = titles.index("Processing time by stage (take read → outputs delivered)")
    assert processing == event_time + 1
    assert panels[processing]["gridPos"]["y"] == panels[event_time]["gridPos"]["y"]
    assert all("personify_take_seconds_bucket" in target["expr"]
               for target in panels[processing]["targets"])


def test_every_panel_queries_prometheus():
    for panel in _panels():
        assert panel["datasource"] == build_dashboard.DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == build_dashboard.DATASOURCE
            assert target["expr"].strip(), panel["title"]


def test_panels_sit_on_the_grid_without_overlapping():
    cells = set()
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, panel["title"]
        cells |= area


def test_template_variables_default_to_values_of_their_closed_sets():
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["model"]["current"]["value"] in MODELS
    assert [o["value"] for o in variables["window"]["options"]] == list(WINDOWS)
    assert variables["window"]["current"]["value"] in WINDOWS


def test_every_variable_used_in_a_query_is_resolved():
    for title, expr in build_dashboard.queries(BOARD):
        assert "$" not in expr and "$" not in title, title


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    rules = [{"record": f"dashboard:query_{i}", "expr": expr}
             for i, (_, expr) in enumerate(build_dashboard.queries(BOARD))]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _promtool(promtool, "check", "rules", str(path))


def test_every_metric_in_the_dashboard_and_alerts_is_exported_by_the_worker():
    exported = _exported_series()
    exprs = [expr for _, expr in build_dashboard.queries(BOARD)] + _alert_exprs()
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used - exported == set()
    assert {"personify_attributed_revenue_minor_units",
            "personify_time_to_conversion_seconds_bucket"} <= used


def _panel_exprs(title: str) -> list[str]:
    panels = [panel for panel in _panels() if panel["title"] == title]
    assert len(panels) == 1, title
    return [target["expr"] for target in panels[0]["targets"]]


def test_corrections_per_1000_revenue_events_sum_workers_kinds_and_causes(promtool, tmp_path):
    by_model, overall = _panel_exprs("Credit corrections per 1,000 revenue events")
    # Per minute: linear first-asserts 90 payments + 10 refunds over two workers, 2 corrections;
    # first_touch 50 payments, no correction; an idle model has no ratio (not a division by 0).
    series = {
        'personify_credits_emitted_total{instance="w1",model="linear",kind="payment"}': "0+90x10",
        'personify_credits_emitted_total{instance="w2",model="linear",kind="refund"}': "0+10x10",
        'personify_credits_emitted_total{instance="w1",model="first_touch",kind="payment"}':
            "0+50x10",
        'personify_credits_emitted_total{instance="w1",model="w_shaped",kind="payment"}': "0x10",
        'personify_credit_corrections_total{instance="w1",model="linear",cause="late_touch"}':
            "0+1x10",
        'personify_credit_corrections_total{instance="w2",model="linear",cause="late_link"}':
            "0+1x10",
        'personify_credit_corrections_total{instance="w1",model="first_touch",cause="late_touch"}':
            "0x10",
        'personify_credit_corrections_total{instance="w1",model="w_shaped",cause="late_touch"}':
            "0x10",
    }
    cases = {"tests": [{
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [
            {"expr": by_model, "eval_time": "10m",
             "exp_samples": [{"labels": '{model="first_touch"}', "value": 0},
                             {"labels": '{model="linear"}', "value": 20}]},
            {"expr": overall, "eval_time": "10m",
             "exp_samples": [{"labels": "{}", "value": 2000 / 150}]},
        ],
    }]}
    path = tmp_path / "corrections_test.yml"
    path.write_text(yaml.safe_dump(cases))
    _promtool(promtool, "test", "rules", str(path))


def test_late_events_are_shown_by_outcome():
    (expr,) = _panel_exprs("Late events /s by outcome")
    assert expr == "sum by (outcome) (rate(personify_late_events_total[5m]))"


def test_the_correction_metrics_start_at_zero_for_their_closed_label_sets():
    metrics = create_metrics()
    zero_known_labels(metrics, ("page-views-v1", "billing-v1"), ("linear", "first_touch"))
    samples = {(sample.name, tuple(sorted(sample.labels.items())))
               for family in metrics.registry.collect() for sample in family.samples
               if sample.value == 0}
    causes = ("late_touch", "late_link", "late_signup", "earlier_payment", "identity_move")
    for model in ("linear", "first_touch"):
        for cause in causes:
            assert ("personify_credit_corrections_total",
                    (("cause", cause), ("model", model))) in samples
    for outcome in LATE_EVENT_OUTCOMES:
        assert ("personify_late_events_total", (("outcome", outcome),)) in samples
    for topic in ("page-views-v1", "billing-v1"):
        assert ("personify_duplicate_events_total", (("topic", topic),)) in samples


def test_the_dead_letter_rate_alert_counts_every_bad_data_reason_and_no_other():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"]
               if r.get("alert") == "PersonifyDeadLetterRateHigh"]
    matchers = set(re.findall(r'personify_dead_letters_total\{reason!~"([^"]+)"\}', rule["expr"]))
    assert len(matchers) == 1 and "personify_dead_letters_total[" not in rule["expr"]
    excluded = set(matchers.pop().split("|"))
    assert excluded == set(NOT_BAD_DATA) and excluded < set(REASONS)
