"""The demo's answer: read what the pipeline published, then print it and write it as HTML.

`TopicReader` reads an output topic from its beginning with a plain assignment (no consumer
group, nothing committed), so the report never disturbs other subscribers. The tables come
from `readmodels/report.py`; this module only formats them: a plain-text report that fits an
100-column terminal, and a self-contained HTML page (inline SVG charts, no scripts, no
external assets). Money is shown in whole major units of the reporting currency.
"""

from __future__ import annotations

import html
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from readmodels.icp import DIMENSIONS, IdealCustomerProfile, TraitLift
from readmodels.mrr_bridge import BridgeMonth
from readmodels.report import (
    ChannelRow,
    ConversionTime,
    Report,
    TruthPerson,
    mean_minor,
)
from readmodels.retention import GroupRetention, Retained, tenths_of_percent
from readmodels.spend_return import SpendRow, best_channel
from streams.broker import client_config, partitions_of
from streams.topology import Settings

DAY_MS = 86_400_000
WIDTH = 100
MODEL_LABELS = {"first_touch": "first touch", "last_touch": "last touch",
                "last_non_direct": "last non-dir.", "linear": "linear",
                "position_based": "position", "time_decay": "time decay", "w_shaped": "W-shaped"}
SHORT_MODEL_LABELS = {"first_touch": "first", "last_touch": "last",
                      "last_non_direct": "last n-d", "linear": "linear",
                      "position_based": "position", "time_decay": "decay", "w_shaped": "W"}
"""Model names short enough for seven amount columns in 100 columns of text."""
MOVEMENT_ORDER = ("new", "expansion", "contraction", "churn", "reactivation")
BRIDGE_MONTHS = 12
"""Months of the MRR bridge the tables show (the waterfall spans them all)."""
SHOWN_DIFFERENCES = 8
TRIANGLE_COHORTS = 24
"""Cohorts (rows) of the retention triangles: the newest ones."""
TEXT_TRIANGLE_AGES = 12
"""Months since conversion (columns) of the printed triangles: 12 fit in 100 columns."""


# ------------------------------------------------------------------------------- reading


class TopicReader:
    """A topic read from its first offset; `read_available` folds what has arrived so far."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = Consumer({
            **client_config(settings.kafka_bootstrap),
            "group.id": f"personify-report-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self._topic = topic
        self._partitions = partitions_of(self._consumer, topic, settings.kafka_bootstrap)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                               for p in self._partitions])
        self._positions = dict.fromkeys(self._partitions, 0)
        self.messages = 0

    def read_available(self, fold: Callable[[Any], object], budget_s: float = 0.5,
                       parse: Callable[[bytes], Any] = orjson.loads) -> int:
        """Fold messages (parsed JSON, or as `parse` reads their bytes) until none arrives for
        a moment or `budget_s` is spent."""
        deadline = time.monotonic() + budget_s
        read = 0
        while time.monotonic() < deadline:
            batch = self._consumer.consume(1000, timeout=0.1)
            if not batch:
                break
            for message in batch:
                if message.error() is not None:
                    continue
                self._positions[message.partition()] = message.offset() + 1
                if message.value() is not None:  # a tombstone deletes; there is nothing to fold
                    fold(parse(message.value()))
                    read += 1
        self.messages += read
        return read

    def read_to_end(self, fold: Callable[[Any], object], timeout_s: float = 60.0,
                    parse: Callable[[bytes], Any] = orjson.loads) -> None:
        """Fold everything up to the end offsets as they are now."""
        ends = {}
        for partition in self._partitions:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=10)
            if high > low:  # an empty (or fully deleted) partition has nothing to wait for
                ends[partition] = high
        deadline = time.monotonic() + timeout_s
        while any(self._positions[p] < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._topic} not read to its end within {timeout_s:.0f} s")
            self.read_available(fold, parse=parse)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Truth:
    """The simulator's truth file: the signed-up people and the stream's totals."""

    people: tuple[TruthPerson, ...]
    totals: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def revenue_events(self) -> int:
        """Well-formed payments and refunds: each yields one credit per model."""
        return sum(money["payments"] + money["refunds"]
                   for money in self.totals["currencies"].values())


def load_truth(path: Path) -> Truth:
    data = orjson.loads(path.read_bytes())
    return Truth(tuple(TruthPerson.from_dict(p) for p in data["people"]), data["totals"],
                 data["config"])


# ------------------------------------------------------------------------------ formatting


def money(minor: int, exponent: int) -> str:
    """Whole major units with thousands separators (half away from zero)."""
    return f"{mean_minor(minor, 10 ** exponent):,}"


def percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def days(ms: int) -> str:
    return f"{ms / DAY_MS:.1f}"


def _conversion_cells(conversion: ConversionTime | None) -> tuple[str, str]:
    if conversion is None:
        return ("–", "–")
    return (days(conversion.median_ms), days(conversion.p90_ms))


def text_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
               left: int = 1, indent: int = 2) -> list[str]:
    """Columns sized to their content, two spaces apart; the first `left` columns are
    left-aligned, the others right-aligned (numbers)."""
    body = [list(row) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [f"{cell:<{w}}" if i < left else f"{cell:>{w}}"
                 for i, (cell, w) in enumerate(zip(cells, widths, strict=True))]
        return (" " * indent + "  ".join(parts)).rstrip()

    return [line(headers), " " * indent + "-" * (sum(widths) + 2 * (len(widths) - 1)),
            *map(line, body)]


# ----------------------------------------------------------------------------- text report


def render_text(report: Report, *, title: str) -> str:
    """The printed answer: four sections, each a few lines and tables within 100 columns."""
    lines = [
        "=" * WIDTH, title, _headline(report), "=" * WIDTH,
        "", *_best_customers(report),
        "", *_channels(report),
        "", *_attribution(report),
        *_spend(report),
        "", *_matrix(report),
        "", *_mrr(report),
        "", *_retention(report),
        "", *_icp(report),
        "", *_truth(report),
        "", *_consistency(report)]
    return "\n".join(wrapped for line in lines for wrapped in _fit(line))


def _fit(line: str) -> list[str]:
    """A line longer than the terminal wrapped at words, continuing at its own indentation."""
    if len(line) <= WIDTH:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()))
    return textwrap.wrap(line.strip(), WIDTH, initial_indent=indent,
                         subsequent_indent=indent + "  ")


def _headline(report: Report) -> str:
    c = report.concentration
    return (f"{report.people:,} known people · {c.customers:,} customers · revenue "
            f"{report.currency} {money(c.revenue_minor, report.exponent)} · MRR "
            f"{report.currency} {money(report.mrr_minor, report.exponent)}")


def _best_customers(report: Report) -> list[str]:
    c, x = report.concentration, report.exponent
    lines = ["WHO ARE MY BEST CUSTOMERS?",
             f"  The top {c.top_percent} % of customers ({c.top_customers:,} of "
             f"{c.customers:,}) bring {percent(c.top_revenue_share)} of revenue."]
    if c.power_segment is not None:
        p = c.power_segment
        lines.append(f"  Power segment: {p.segment}, {percent(p.customer_share)} of customers "
                     f"bring {percent(p.revenue_share)} of revenue (LTV {report.currency} "
                     f"{money(p.ltv_minor, x)}).")
    lines += ["", *text_table(
        ["segment", "customers", "of customers", f"revenue {report.currency}", "of revenue",
         "LTV", "MRR"],
        [[_marked(r.segment, r.low_confidence), f"{r.customers:,}", percent(r.customer_share),
          money(r.revenue_minor, x), percent(r.revenue_share), money(r.ltv_minor, x),
          money(r.mrr_minor, x)]
         for r in report.segments]), *_small_numbers_note(report, report.segments)]
    return lines


def _marked(name: str, low_confidence: bool) -> str:
    return f"{name} *" if low_confidence else name


def _small_numbers_note(report: Report, rows) -> list[str]:
    if not any(row.low_confidence for row in rows):
        return []
    return [f"  * fewer than {report.min_customers} customers: low confidence, never ranked "
            "first."]


def _acquiring(report: Report) -> list[ChannelRow]:
    return [row for row in report.channels if row.customers]


def _channels(report: Report) -> list[str]:
    x = report.exponent
    overall = report.conversion
    lines = ["WHERE DID THEY COME FROM?",
             "  Acquisition channels by LTV (the first touch of each customer's journey); days "
             "from first touch to conversion, median and 90th percentile."]
    if overall is not None:
        lines.append(f"  All customers: median {days(overall.median_ms)} days, p90 "
                     f"{days(overall.p90_ms)} days ({overall.customers:,} measured).")
    lines += ["", *text_table(
        ["#", "channel", "customers", f"revenue {report.currency}", "of revenue", "LTV", "MRR",
         "median d", "p90 d"],
        [[str(place), _marked(r.channel, r.low_confidence), f"{r.customers:,}",
          money(r.revenue_minor, x), percent(r.revenue_share), money(r.ltv_minor or 0, x),
          money(r.mrr_minor, x), *_conversion_cells(r.conversion)]
         for place, r in enumerate(_acquiring(report), start=1)], left=2),
        *_small_numbers_note(report, _acquiring(report))]
    return lines


def _attribution(report: Report) -> list[str]:
    x = report.exponent
    ranks = {model: report.rank(model) for model in report.models}
    headers = [SHORT_MODEL_LABELS.get(m, m) for m in report.models]
    return [
        f"  Attributed revenue ({report.currency}) by model: each model's credit to the touches "
        "of that channel.", "", *text_table(
            ["channel", *headers],
            [*([r.channel, *(_amount_or_dash(r.attributed_minor[m], x) for m in report.models)]
               for r in report.channels),
             ["total", *(money(report.credited_minor[m], x) for m in report.models)]]),
        "", "  Rank by LTV and by attributed revenue under each model, side by side.", "",
        *text_table(
            ["channel", "LTV", *headers],
            [[r.channel, str(place) if r.customers else "–",
              *(str(ranks[m][r.channel]) if r.attributed_minor[m] else "–"
                for m in report.models)]
             for place, r in enumerate(report.channels, start=1)])]


def _amount_or_dash(minor: int, exponent: int) -> str:
    return money(minor, exponent) if minor else "–"


def _matrix(report: Report) -> list[str]:
    matrix, x = report.matrix, report.exponent
    return [f"  Channel × segment: customers / revenue ({report.currency}).", "", *text_table(
        ["channel", *matrix.segments],
        [[channel, *(_matrix_cell(matrix.cell(channel, s).customers,
                                  matrix.cell(channel, s).revenue_minor, x)
                     for s in matrix.segments)]
         for channel in matrix.channels])]


def _matrix_cell(customers: int, revenue_minor: int, exponent: int) -> str:
    return f"{customers:,} / {money(revenue_minor, exponent)}" if customers else "–"


def _mrr(report: Report) -> list[str]:
    x, cur = report.exponent, report.currency
    subscribers = sum(r.subscribers for r in report.segments)
    lines = ["MRR",
             f"  Current MRR {cur} {money(report.mrr_minor, x)} from {subscribers:,} paying "
             "subscribers (latest profiles).", ""]
    by_segment = text_table(
        ["segment", "subscribers", f"MRR {cur}", "share"],
        [[r.segment, f"{r.subscribers:,}", money(r.mrr_minor, x),
          percent(r.mrr_minor / report.mrr_minor if report.mrr_minor else 0)]
         for r in report.segments])
    by_channel = text_table(
        ["channel", "subscribers", f"MRR {cur}"],
        [[r.channel, f"{r.subscribers:,}", money(r.mrr_minor, x)]
         for r in sorted(_acquiring(report), key=lambda r: -r.mrr_minor)], indent=0)
    lines += _side_by_side(by_segment, by_channel)
    if report.mrr_bridge:
        lines += ["", f"  MRR bridge by calendar month ({cur}, last {BRIDGE_MONTHS} months): "
                      "opening + new + expansion + reactivation − contraction − churn = "
                      "closing.", "", *text_table(
                          ["month", "opening", "new", "expansion", "reactivation",
                           "contraction", "churn", "closing"],
                          [[m.month, *(money(v, x) for v in _bridge_values(m))]
                           for m in report.mrr_bridge[-BRIDGE_MONTHS:]])]
    if report.mrr_movements:
        counted = ", ".join(f"{kind} {report.mrr_movements.get(kind, 0):,}"
                            for kind in MOVEMENT_ORDER)
        lines += ["", f"  MRR movements the worker counted for this run's events (events sent "
                      f"again count none): {counted}."]
    return lines


def ratio_text(share: Fraction | None) -> str:
    """An exact ratio as a percent to one decimal, without the sign (tables say "%")."""
    if share is None:
        return "–"
    tenths = tenths_of_percent(share)
    return f"{'-' if tenths < 0 else ''}{abs(tenths) // 10}.{abs(tenths) % 10}"


def _retention(report: Report) -> list[str]:
    r = report.retention
    lines = ["RETENTION", f"  {_retention_lead(report)}"]
    if not r.cohorts:
        return lines
    for label, groups in (("segment", r.segments), ("channel", r.channels)):
        if r.ranked_by is not None:
            lines += ["", *text_table([label, "months", "customers", "cohorts", "NRR %",
                                       "GRR %", "logos %"], _retention_rows((*groups, r.overall)))]
    lines += _small_numbers_note(report, [f for g in (*r.segments, *r.channels)
                                          for f in g.figures])
    cohorts = r.cohorts[-TRIANGLE_COHORTS:]
    ages = range(1, min(TEXT_TRIANGLE_AGES, max(len(c.ages) for c in cohorts) - 1) + 1)
    for name, ratio in (("NRR", attrgetter("nrr")), ("GRR", attrgetter("grr"))):
        lines += ["", f"  {name} % by conversion cohort (rows) and months since conversion "
                      "(columns); n = customers measured.", "", *text_table(
                          ["cohort", "n", *map(str, ages)],
                          [[c.month, f"{c.ages[0].customers:,}",
                            *(ratio_text(ratio(c.ages[age])) if age < len(c.ages) else ""
                              for age in ages)] for c in cohorts])]
    return lines


def _retention_lead(report: Report) -> str:
    r = report.retention
    if not r.cohorts:
        return "No conversion month is complete yet: nothing to measure."
    ages = f"{', '.join(map(str, r.ages[:-1]))} and {r.ages[-1]}" if len(r.ages) > 1 else \
        str(r.ages[0])
    lead = (f"Net (NRR) and gross (GRR) revenue retention and logo retention at {ages} months "
            f"since conversion, pooled over the monthly cohorts old enough by "
            f"{r.last_complete_month} (the last complete month); customers = those with MRR at "
            "the end of their conversion month.")
    if r.ranked_by is None:
        return lead + f" No cohort has reached {min(r.ages)} months yet."
    return lead + f" Rows rank by NRR at {r.ranked_by} months."


def _retention_rows(groups: Iterable[GroupRetention]) -> list[list[str]]:
    rows = []
    for group in groups:
        if not group.figures:
            rows.append([group.name, "–", f"{group.customers:,}", "", "", "", ""])
        for place, f in enumerate(group.figures):
            rows.append([_marked(group.name, _any_low(group)) if place == 0 else "",
                         str(f.age), f"{f.retained.customers:,}{' *' if f.low_confidence else ''}",
                         str(f.cohorts), ratio_text(f.retained.nrr),
                         ratio_text(f.retained.grr), ratio_text(f.retained.logo_retention)])
    return rows


def _any_low(group: GroupRetention) -> bool:
    return any(f.low_confidence for f in group.figures)


# ----------------------------------------------------------------- ideal customer profile

DIMENSION_LABELS = {"industry": "industry", "company_size": "company size",
                    "country": "country", "plan": "plan"}


def _icp(report: Report) -> list[str]:
    icp = report.icp
    lines = ["IDEAL CUSTOMER PROFILE", *(f"  {line}" for line in _icp_lead(icp))]
    if not icp.traits:
        return lines
    lines += ["", *text_table(
        ["trait", "value", "top n", "top %", "all n", "all %", "lift", "95 % interval", "ICP"],
        _icp_trait_rows(icp), left=2)]
    if any(row.low_confidence for row in icp.traits):
        lines.append(f"  * held by fewer than {icp.min_customers} top customers: low "
                     "confidence, never in the profile.")
    if icp.dimensions:
        lines += ["", "  Acquisition channels by the share of their customers who fit the "
                      "profile.", "", *text_table(
                          ["#", "channel", "customers", "ICP-fit", "fit rate %"],
                          _icp_channel_rows(icp), left=2),
                  *_small_numbers_note(report, icp.channels)]
    return lines


def _icp_lead(icp: IdealCustomerProfile) -> list[str]:
    if not icp.customers:
        return ["No customers yet: nothing to profile."]
    lead = [f"Trait values the top {icp.top_percent} % of customers by lifetime revenue "
            f"({icp.top_customers:,} of {icp.customers:,}) hold more often than customers do: "
            "lift = top share / all share, with its 95 % interval. The profile (ICP) is every "
            "value whose interval lies above 1."]
    if not icp.dimensions:
        return lead + ["No trait value over-indexes clearly enough: the profile is empty."]
    fit = " · ".join(f"{k}: {count:,}" for k, count in enumerate(icp.fit_counts))
    return lead + [
        f"Profile: {_icp_profile_text(icp)}.",
        f"ICP-fit customers (matching all {icp.dimensions} of its dimensions): {icp.fits:,} of "
        f"{icp.customers:,} ({ratio_text(Fraction(icp.fits, icp.customers))} %); customers by "
        f"dimensions matched: {fit}."]


def _icp_profile_text(icp: IdealCustomerProfile) -> str:
    """`industry Software; company size 201-1000 or 5001+`: the ICP's values by dimension."""
    profile = icp.profile
    return "; ".join(
        f"{DIMENSION_LABELS[d]} {' or '.join(r.value for r in profile if r.dimension == d)}"
        for d in DIMENSIONS if any(r.dimension == d for r in profile))


def _icp_trait_rows(icp: IdealCustomerProfile) -> list[list[str]]:
    return [[DIMENSION_LABELS[r.dimension], _marked(r.value, r.low_confidence), f"{r.top:,}",
             ratio_text(r.share_top), f"{r.customers:,}", ratio_text(r.share_all),
             _lift_text(r.lift), _interval_text(r), "yes" if r.ideal else ""]
            for r in icp.traits]


def _icp_channel_rows(icp: IdealCustomerProfile) -> list[list[str]]:
    return [[str(place), _marked(ch.channel, ch.low_confidence), f"{ch.customers:,}",
             f"{ch.fits:,}", ratio_text(ch.fit_rate)]
            for place, ch in enumerate(icp.channels, start=1)]


def _lift_text(lift: Fraction) -> str:
    """To two decimals, rounded half away from zero from the exact lift."""
    return f"{mean_minor(lift.numerator * 100, lift.denominator) / 100:.2f}"


def _interval_text(row: TraitLift) -> str:
    if row.interval is None:
        return "–"
    low, high = row.interval
    return f"{low:.2f}–{high:.2f}"


def _html_icp(report: Report) -> list[str]:
    icp = report.icp
    parts = ["<h2>Ideal customer profile</h2>",
             *(f"<p>{_e(line)}</p>" for line in _icp_lead(icp))]
    if not icp.traits:
        return parts
    parts.append(_html_table(
        ["trait", "value", "top n", "top %", "all n", "all %", "lift", "95 % interval", "ICP"],
        [[*row[:6], _heat_cell(row[6], min(300, max(0, round(float(r.lift) * 100) - 100)), 300,
                               "16,185,129"), *row[7:]]
         for row, r in zip(_icp_trait_rows(icp), icp.traits, strict=True)]))
    if any(row.low_confidence for row in icp.traits):
        parts.append(f"<p>* held by fewer than {icp.min_customers} top customers: low "
                     "confidence, never in the profile.</p>")
    if icp.dimensions:
        parts += ["<h3>Channels that bring ICP-fit customers</h3>",
                  _html_table(["#", "channel", "customers", "ICP-fit", "fit rate %"],
                              _icp_channel_rows(icp)),
                  *_html_small_numbers(report, icp.channels)]
    return parts


def _bridge_values(month: BridgeMonth) -> tuple[int, ...]:
    return (month.opening, month.new, month.expansion, month.reactivation, month.contraction,
            month.churn, month.closing)


def _side_by_side(left: list[str], right: list[str], gap: int = 6) -> list[str]:
    width = max(map(len, left))
    rows = max(len(left), len(right))
    left, right = left + [""] * (rows - len(left)), right + [""] * (rows - len(right))
    return [f"{a:<{width}}{' ' * gap}{b}".rstrip() for a, b in zip(left, right, strict=True)]


def _truth(report: Report) -> list[str]:
    t = report.truth
    if t is None:
        return ["CHECKED AGAINST THE SIMULATOR'S TRUTH", "  No truth file."]
    lines = ["CHECKED AGAINST THE SIMULATOR'S TRUTH",
             f"  Customers: {t.pipeline_customers:,} in the pipeline, {t.truth_customers:,} in "
             f"the truth ({len(t.missing):,} missing, {len(t.unexpected):,} unexpected).",
             f"  First-touch acquisition channel equals the truth for {t.matched:,} of "
             f"{t.compared:,} unambiguous customers ({percent(t.match_share)})."]
    for d in t.differences[:SHOWN_DIFFERENCES]:
        lines.append(f"    {d.person_id}: pipeline {d.pipeline_channel}, truth "
                     f"{d.truth_channel} (first visit {d.first_visit_channel})")
    if len(t.differences) > SHOWN_DIFFERENCES:
        lines.append(f"    … and {len(t.differences) - SHOWN_DIFFERENCES:,} more")
    for label, people in (("missing", t.missing), ("unexpected", t.unexpected)):
        if people:
            lines.append(f"    {label}: {', '.join(people[:SHOWN_DIFFERENCES])}"
                         + (" …" if len(people) > SHOWN_DIFFERENCES else ""))
    lines += [f"  Shared-device customers, compared apart because the identity rules may rightly "
              f"give their visits to the other person: {t.ambiguous_matched:,} of "
              f"{t.ambiguous_compared:,} as the rules say, "
              f"{t.ambiguous_first_visit_matched:,} of {t.ambiguous_compared:,} where their own "
              "first visit came from.",
              f"  Revenue per customer equals the simulator's books (original currency, to the "
              f"minor unit) for {t.revenue_matched:,} of "
              f"{t.pipeline_customers - len(t.unexpected):,} customers."]
    return lines


def _consistency(report: Report) -> list[str]:
    checks = consistency_checks(report)
    return ["CONSISTENCY OF THE OUTPUTS",
            *(f"  {'ok  ' if ok else 'FAIL'}  {text}" for ok, text in checks)]


def consistency_checks(report: Report) -> list[tuple[bool, str]]:
    """What the two output topics must agree on (DESIGN.md §8)."""
    credited = set(report.credited_minor.values())
    total = report.concentration.revenue_minor
    x, cur = report.exponent, report.currency
    checks = [
        (len(credited) <= 1, "every model credits the same total: "
         + ", ".join(f"{MODEL_LABELS.get(m, m)} {money(v, x)}"
                     for m, v in report.credited_minor.items())
         if len(credited) > 1 else
         f"every model credits the same total ({cur} {money(next(iter(credited), 0), x)})"),
        (credited <= {total}, f"credits sum to the profiles' lifetime revenue ({cur} "
         f"{money(total, x)})"),
    ]
    if "first_touch" in report.models:
        off = [r.channel for r in report.channels
               if r.attributed_minor["first_touch"] != r.revenue_minor]
        checks.append((not off, "first-touch credit per channel equals the lifetime revenue of "
                       "the customers it acquired" + (f" (differs: {', '.join(off)})"
                                                      if off else "")))
    return checks


# ----------------------------------------------------------------------------- HTML report

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#84cc16")
STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;
max-width:1100px;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #e5e7eb}
.lead{color:#4b5563}.kpis{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}
.kpi{background:#f3f4f6;border-radius:8px;padding:.6rem 1rem}.kpi b{display:block;font-size:1.3rem}
table{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e5e7eb;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f9fafb}
svg{display:block;margin:1rem 0;font:12px system-ui,sans-serif}
.ok{color:#047857}.fail{color:#b91c1c;font-weight:bold}small{color:#6b7280}
"""


def render_html(report: Report, *, title: str, footer: str = "") -> str:
    """A self-contained page: the same answer as the text, with inline SVG charts."""
    c, x, cur = report.concentration, report.exponent, report.currency
    kpis = [("customers", f"{c.customers:,}"), ("revenue", f"{cur} {money(c.revenue_minor, x)}"),
            (f"top {c.top_percent} % bring", percent(c.top_revenue_share)),
            ("MRR", f"{cur} {money(report.mrr_minor, x)}")]
    if report.truth is not None:
        kpis.append(("first touch = truth", percent(report.truth.match_share)))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Personify: who are my best customers, and where did they come from?</h1>"
        f"<p class='lead'>{_e(title)}</p><div class='kpis'>",
        *(f"<div class='kpi'>{_e(label)}<b>{_e(value)}</b></div>" for label, value in kpis),
        "</div>", *_html_best_customers(report), *_html_channels(report),
        *_html_spend(report), *_html_mrr(report), *_html_retention(report), *_html_icp(report),
        *_html_truth(report),
        f"<footer><small>{_e(footer)}</small></footer></body></html>"]
    return "\n".join(parts)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        cell if isinstance(cell, Markup) else f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """A table cell already rendered as HTML (`<td …>…</td>`)."""


def _heat_cell(text: str, value: int, top: int, colour: str = "37,99,235") -> Markup:
    alpha = 0.08 + 0.6 * value / top if top > 0 and value > 0 else 0.0
    return Markup(f"<td style='background:rgba({colour},{alpha:.2f})'>{_e(text)}</td>")


def _html_best_customers(report: Report) -> list[str]:
    c, x, cur = report.concentration, report.exponent, report.currency
    lines = ["<h2>Who are my best customers?</h2>",
             f"<p>The top {c.top_percent} % of customers ({c.top_customers:,} of "
             f"{c.customers:,}) bring <b>{percent(c.top_revenue_share)}</b> of revenue."]
    if c.power_segment is not None:
        p = c.power_segment
        lines.append(f" Power segment: <b>{_e(p.segment)}</b>, {percent(p.customer_share)} of "
                     f"customers bring {percent(p.revenue_share)} of revenue.")
    lines += ["</p>", concentration_svg(c.curve, c.top_percent, c.top_revenue_share),
              paired_bars_svg([(r.segment, r.customer_share, r.revenue_share)
                               for r in report.segments],
                              ("share of customers", "share of revenue")),
              _html_table(["segment", "customers", "of customers", f"revenue {cur}",
                           "of revenue", f"LTV {cur}", f"MRR {cur}"],
                          [[_marked(r.segment, r.low_confidence), f"{r.customers:,}",
                            percent(r.customer_share), money(r.revenue_minor, x),
                            percent(r.revenue_share), money(r.ltv_minor, x),
                            money(r.mrr_minor, x)]
                           for r in report.segments]),
              *_html_small_numbers(report, report.segments)]
    return lines


def _html_small_numbers(report: Report, rows) -> list[str]:
    return [f"<p>{_e(line.strip())}</p>" for line in _small_numbers_note(report, rows)]


def _html_channels(report: Report) -> list[str]:
    x, cur = report.exponent, report.currency
    acquiring = _acquiring(report)
    top_credit = max((v for r in report.channels for v in r.attributed_minor.values()),
                     default=0)
    ranks = {model: report.rank(model) for model in report.models}
    matrix = report.matrix
    top_cell = max((cell.revenue_minor for cell in matrix.cells.values()), default=0)
    timed = [(r.channel, r.conversion) for r in acquiring if r.conversion is not None]
    return [
        "<h2>Where did they come from?</h2>",
        "<p>Acquisition channel = the first touch of the customer's journey. Average LTV "
        f"({cur}) by acquisition channel:</p>",
        bars_svg([(_marked(r.channel, r.low_confidence), r.ltv_minor or 0,
                   f"{money(r.ltv_minor or 0, x)} (n={r.customers:,})") for r in acquiring]),
        _html_table(["#", "channel", "customers", f"revenue {cur}", "of revenue", f"LTV {cur}",
                     f"MRR {cur}", "median days", "p90 days"],
                    [[place, _marked(r.channel, r.low_confidence), f"{r.customers:,}",
                      money(r.revenue_minor, x), percent(r.revenue_share),
                      money(r.ltv_minor or 0, x), money(r.mrr_minor, x),
                      *_conversion_cells(r.conversion)]
                     for place, r in enumerate(acquiring, start=1)]),
        *_html_small_numbers(report, acquiring),
        f"<h3>Attributed revenue by model ({cur})</h3><p>Rows in LTV order; the number after "
        "# is the channel's rank under that model.</p>",
        _html_table(["channel", *(MODEL_LABELS.get(m, m) for m in report.models)],
                    [[r.channel, *(_heat_cell(f"{money(r.attributed_minor[m], x)} "
                                              f"#{ranks[m][r.channel]}",
                                              r.attributed_minor[m], top_credit)
                                   for m in report.models)]
                     for r in report.channels]),
        f"<h3>Channel × segment</h3><p>Customers / revenue ({cur}).</p>",
        _html_table(["channel", *matrix.segments],
                    [[ch, *(_heat_cell(_matrix_cell(matrix.cell(ch, s).customers,
                                                    matrix.cell(ch, s).revenue_minor, x),
                                       matrix.cell(ch, s).revenue_minor, top_cell,
                                       "16,185,129")
                            for s in matrix.segments)]
                     for ch in matrix.channels]),
        "<h3>Time to conversion</h3><p>Days from first touch to first payment: the bar runs "
        "from the median to the 90th percentile.</p>",
        range_svg([(name, t.median_ms / DAY_MS, t.p90_ms / DAY_MS) for name, t in timed]),
    ]


def _html_mrr(report: Report) -> list[str]:
    x, cur = report.exponent, report.currency
    parts = ["<h2>MRR</h2>",
             f"<p>Current MRR {cur} {money(report.mrr_minor, x)}, by segment and by "
             "acquisition channel.</p>",
             bars_svg([(r.segment, r.mrr_minor, money(r.mrr_minor, x))
                       for r in report.segments], colour=PALETTE[2]),
             bars_svg([(r.channel, r.mrr_minor, money(r.mrr_minor, x))
                       for r in sorted(_acquiring(report), key=lambda r: -r.mrr_minor)],
                      colour=PALETTE[2])]
    if report.mrr_bridge:
        first, last = report.mrr_bridge[0], report.mrr_bridge[-1]
        parts += [f"<h3>MRR bridge</h3><p>From {_e(first.month)} to {_e(last.month)} ({cur}): "
                  "opening + new + expansion + reactivation − contraction − churn = closing."
                  "</p>",
                  waterfall_svg([
                      (f"opening {first.month}", first.opening, True),
                      *((kind, sign * sum(getattr(m, kind) for m in report.mrr_bridge), False)
                        for kind, sign in (("new", 1), ("expansion", 1), ("reactivation", 1),
                                           ("contraction", -1), ("churn", -1))),
                      (f"closing {last.month}", last.closing, True)],
                      lambda v: money(v, x)),
                  _html_table(["month", "opening", "new", "expansion", "reactivation",
                               "contraction", "churn", "closing"],
                              [[m.month, *(money(v, x) for v in _bridge_values(m))]
                               for m in report.mrr_bridge[-BRIDGE_MONTHS:]])]
    if report.mrr_movements:
        parts.append(_html_table(["movement", "count (this run)"],
                                 [[k, f"{report.mrr_movements.get(k, 0):,}"]
                                  for k in MOVEMENT_ORDER]))
    return parts


def _html_retention(report: Report) -> list[str]:
    r, x, cur = report.retention, report.exponent, report.currency
    parts = ["<h2>Retention</h2>", f"<p>{_e(_retention_lead(report))}</p>"]
    if not r.cohorts:
        return parts
    headers = [h for age in r.ages for h in (f"NRR {age} m", f"GRR {age} m",
                                             f"logos {age} m", f"n {age} m")]
    for label, groups in (("segment", r.segments), ("channel", r.channels)):
        if r.ranked_by is None:
            break
        parts.append(_html_table([label, *headers], [
            [_marked(g.name, _any_low(g)),
             *(cell for age in r.ages for cell in _html_pooled(g, age))]
            for g in (*groups, r.overall)]))
    parts += _html_small_numbers(report, [f for g in (*r.segments, *r.channels)
                                          for f in g.figures])
    cohorts = r.cohorts[-TRIANGLE_COHORTS:]
    ages = range(1, max(len(c.ages) for c in cohorts))
    for name, ratio in (("NRR", attrgetter("nrr")), ("GRR", attrgetter("grr"))):
        parts += [f"<h3>{name} by conversion cohort</h3><p>Rows: the month customers converted; "
                  f"columns: months since; cells: {name} (hover for the exact sums and logo "
                  f"retention). Starting MRR in {cur}.</p>",
                  _html_table(["cohort", "n", "starting MRR", *map(str, ages)], [
                      [c.month, f"{c.ages[0].customers:,}", money(c.ages[0].starting_minor, x),
                       *(_triangle_cell(ratio(c.ages[age]), c.ages[age], x)
                         if age < len(c.ages) else "" for age in ages)]
                      for c in cohorts])]
    return parts


def _html_pooled(group: GroupRetention, age: int) -> list[object]:
    figure = group.at(age)
    if figure is None:
        return ["", "", "", ""]
    cell = figure.retained
    return [_retention_heat(cell.nrr, ratio_text(cell.nrr)),
            _retention_heat(cell.grr, ratio_text(cell.grr)), ratio_text(cell.logo_retention),
            f"{cell.customers:,}{' *' if figure.low_confidence else ''}"]


def _triangle_cell(share: Fraction | None, cell: Retained, exponent: int) -> Markup:
    title = (f"NRR {ratio_text(cell.nrr)} % = {money(cell.retained_minor, exponent)} / "
             f"{money(cell.starting_minor, exponent)}; GRR {ratio_text(cell.grr)} % = "
             f"{money(cell.gross_retained_minor, exponent)} / "
             f"{money(cell.starting_minor, exponent)}; logos {cell.logos:,} of "
             f"{cell.customers:,} ({ratio_text(cell.logo_retention)} %)")
    return _retention_heat(share, ratio_text(share), title)


def _retention_heat(share: Fraction | None, text: str, title: str = "") -> Markup:
    """Green above 100 %, red below, deeper the further from it (full at ±50 points)."""
    tip = f" title='{_e(title)}'" if title else ""
    if share is None:
        return Markup(f"<td{tip}>{_e(text)}</td>")
    distance = min(1.0, abs(float(share) - 1) * 2)
    colour = "16,185,129" if share >= 1 else "239,68,68"
    alpha = 0.06 + 0.6 * distance
    return Markup(f"<td style='background:rgba({colour},{alpha:.2f})'{tip}>{_e(text)}</td>")


def _html_truth(report: Report) -> list[str]:
    t = report.truth
    parts = ["<h2>Checked against the simulator's truth</h2>"]
    if t is not None:
        parts += [
            f"<p>First-touch acquisition channel equals the truth for <b>{t.matched:,} of "
            f"{t.compared:,}</b> unambiguous customers ({percent(t.match_share)}). "
            f"Customers: {t.pipeline_customers:,} in the pipeline, {t.truth_customers:,} in "
            f"the truth. Shared-device customers: {t.ambiguous_matched:,} of "
            f"{t.ambiguous_compared:,} as the identity rules say, "
            f"{t.ambiguous_first_visit_matched:,} where their own first visit came from. "
            f"Revenue per customer equals the simulator's books for {t.revenue_matched:,}.</p>",
            _html_table(["customer", "pipeline", "truth", "first visit"],
                        [[d.person_id, d.pipeline_channel, d.truth_channel,
                          d.first_visit_channel] for d in t.differences])
            if t.differences else ""]
    parts.append("<h3>Consistency of the outputs</h3><ul>" + "".join(
        f"<li class='{'ok' if ok else 'fail'}'>{'ok' if ok else 'FAIL'}: {_e(text)}</li>"
        for ok, text in consistency_checks(report)) + "</ul>")
    return parts


# -------------------------------------------------------------------------------- SVG charts


def bars_svg(items: Sequence[tuple[str, float, str]], *, colour: str = PALETTE[0],
             width: int = 720) -> str:
    """Horizontal bars: label, bar proportional to the value, the value's text."""
    label_w, row_h, text_w = 150, 24, 110
    top = max((value for _, value, _ in items), default=0) or 1
    span = width - label_w - text_w
    rows = []
    for i, (label, value, text) in enumerate(items):
        y = i * row_h
        length = max(0.0, span * value / top)
        rows.append(
            f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end'>{_e(label)}</text>"
            f"<rect x='{label_w}' y='{y + 4}' width='{length:.1f}' height='{row_h - 8}' "
            f"fill='{colour}' rx='2'/>"
            f"<text x='{label_w + length + 6:.1f}' y='{y + 16}'>{_e(text)}</text>")
    return _svg(width, max(1, len(items)) * row_h, rows)


def waterfall_svg(steps: Sequence[tuple[str, int, bool]], text: Callable[[int], str], *,
                  width: int = 720) -> str:
    """A waterfall, one row per step: a total is a bar from zero, a change floats from the
    running level (green up, red down)."""
    label_w, row_h, text_w = 150, 24, 110
    levels, level = [], 0
    for _, value, total in steps:
        start, level = (0, value) if total else (level, level + value)
        levels.append((min(start, level), max(start, level)))
    top = max((high for _, high in levels), default=0) or 1
    span = width - label_w - text_w
    rows = []
    for i, ((label, value, total), (low, high)) in enumerate(zip(steps, levels, strict=True)):
        y, x0 = i * row_h, label_w + span * max(low, 0) / top
        length = max(1.0, span * (high - max(low, 0)) / top) if high > 0 else 1.0
        colour = PALETTE[2] if total else ("#10b981" if value >= 0 else "#ef4444")
        rows.append(
            f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end'>{_e(label)}</text>"
            f"<rect x='{x0:.1f}' y='{y + 4}' width='{length:.1f}' height='{row_h - 8}' "
            f"fill='{colour}' rx='2'/>"
            f"<text x='{x0 + length + 6:.1f}' y='{y + 16}'>{_e(text(value))}</text>")
    return _svg(width, max(1, len(steps)) * row_h, rows)


def paired_bars_svg(items: Sequence[tuple[str, float, float]], legends: tuple[str, str],
                    width: int = 720) -> str:
    """Two bars per label (shares in 0–1): how a group's two shares compare."""
    label_w, row_h, legend_h = 150, 44, 24
    span = width - label_w - 70
    rows = [_legend(label_w, 0, legends)]
    for i, (label, first, second) in enumerate(items):
        y = legend_h + i * row_h
        rows.append(f"<text x='{label_w - 8}' y='{y + 24}' text-anchor='end'>{_e(label)}</text>")
        for j, share in enumerate((first, second)):
            length = span * max(0.0, share)
            rows.append(
                f"<rect x='{label_w}' y='{y + 4 + 18 * j}' width='{length:.1f}' height='14' "
                f"fill='{PALETTE[j]}' rx='2'/><text x='{label_w + length + 6:.1f}' "
                f"y='{y + 16 + 18 * j}'>{percent(share)}</text>")
    return _svg(width, legend_h + max(1, len(items)) * row_h, rows)


def concentration_svg(curve: Sequence[tuple[float, float]], top_percent: int,
                      top_share: float, size: int = 340) -> str:
    """The concentration curve: share of revenue held by the richest share of customers."""
    pad = 52
    inner = size - 2 * pad

    def point(cx: float, cy: float) -> str:
        return f"{pad + cx * inner:.1f},{pad + (1 - cy) * inner:.1f}"

    marker_x, marker_y = point(top_percent / 100, top_share).split(",")
    parts = [
        f"<rect x='{pad}' y='{pad}' width='{inner}' height='{inner}' fill='#f9fafb' "
        "stroke='#d1d5db'/>",
        f"<polyline points='{point(0, 0)} {point(1, 1)}' fill='none' stroke='#9ca3af' "
        "stroke-dasharray='4 4'/>",
        f"<polyline points='{' '.join(point(cx, cy) for cx, cy in curve)}' fill='none' "
        f"stroke='{PALETTE[0]}' stroke-width='2.5'/>",
        f"<circle cx='{marker_x}' cy='{marker_y}' r='4' fill='{PALETTE[3]}'/>",
        f"<text x='{float(marker_x) + 8:.1f}' y='{float(marker_y) + 14:.1f}'>top {top_percent} %"
        f" → {percent(top_share)}</text>",
        f"<text x='{size / 2}' y='{size - 10}' text-anchor='middle'>share of customers, "
        "richest first</text>",
        f"<text x='12' y='{size / 2}' text-anchor='middle' transform='rotate(-90 12 "
        f"{size / 2})'>share of revenue</text>",
        f"<text x='{pad}' y='{pad - 10}'>Revenue concentration</text>"]
    for tick in (0.0, 0.5, 1.0):
        tx, ty = point(tick, tick).split(",")
        parts.append(f"<text x='{tx}' y='{pad + inner + 14}' text-anchor='middle' "
                     f"fill='#6b7280'>{tick:.0%}</text><text x='{pad - 4}' y='{float(ty) + 4:.1f}' "
                     f"text-anchor='end' fill='#6b7280'>{tick:.0%}</text>")
    return _svg(size, size, parts)


def range_svg(items: Sequence[tuple[str, float, float]], width: int = 720) -> str:
    """A bar from the median to the 90th percentile per label, in days."""
    label_w, row_h, axis_h = 150, 24, 22
    span = width - label_w - 40
    top = max((high for _, _, high in items), default=0) or 1
    parts = []
    for i, (label, median, high) in enumerate(items):
        y = i * row_h
        x0, x1 = label_w + span * median / top, label_w + span * high / top
        parts.append(
            f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end'>{_e(label)}</text>"
            f"<rect x='{x0:.1f}' y='{y + 7}' width='{max(1.0, x1 - x0):.1f}' height='10' "
            f"fill='{PALETTE[1]}' rx='2'/><circle cx='{x0:.1f}' cy='{y + 12}' r='5' "
            f"fill='{PALETTE[0]}'/>")
    base = max(1, len(items)) * row_h
    parts.append(f"<circle cx='{label_w + 6}' cy='{base + 30}' r='5' fill='{PALETTE[0]}'/>"
                 f"<text x='{label_w + 16}' y='{base + 34}'>median</text>"
                 f"<rect x='{label_w + 80}' y='{base + 25}' width='30' height='10' "
                 f"fill='{PALETTE[1]}'/><text x='{label_w + 116}' y='{base + 34}'>"
                 "to the 90th percentile</text>")
    for tick in range(0, 6):
        value = top * tick / 5
        tx = label_w + span * tick / 5
        parts.append(f"<text x='{tx:.1f}' y='{base + 16}' text-anchor='middle' "
                     f"fill='#6b7280'>{value:.0f} d</text>")
    return _svg(width, base + axis_h + 24, parts)


def _legend(x: int, y: int, labels: Sequence[str]) -> str:
    return "".join(f"<rect x='{x + 170 * i}' y='{y + 4}' width='12' height='12' "
                   f"fill='{PALETTE[i]}'/><text x='{x + 170 * i + 18}' y='{y + 15}'>"
                   f"{_e(label)}</text>" for i, label in enumerate(labels))


def _svg(width: int, height: int, parts: Sequence[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img'>{''.join(parts)}</svg>")


# ----------------------------------------------------------------------- spend and return


def _ratio_text(value: Fraction | None, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{float(value):,.{digits}f}{suffix}"


def _spend_cells(row: SpendRow, report: Report) -> list[str]:
    x, first = report.exponent, report.models[0] if report.models else None
    cac = "–" if row.cac is None else money(mean_minor(row.cac.numerator,
                                                       row.cac.denominator), x)
    ltv = "–" if row.ltv is None else money(mean_minor(row.ltv.numerator,
                                                       row.ltv.denominator), x)
    return [_marked(row.channel, row.low_confidence), f"{row.totals.customers:,}",
            money(row.totals.spend_minor, x), cac, ltv, _ratio_text(row.ltv_to_cac, 2),
            _ratio_text(row.payback_months), _ratio_text(row.roas(first), 2) if first else "–"]


def _spend_headers(report: Report) -> list[str]:
    first = report.models[0] if report.models else "–"
    return ["channel", "n", f"spend {report.currency}", "CAC", "LTV", "LTV:CAC",
            "payback mo", f"ROAS {SHORT_MODEL_LABELS.get(first, first)}"]


def _spend_answer(report: Report) -> str:
    best = best_channel(report.spend)
    if best is None:
        return "No channel with spend has enough customers to rank."
    return (f"Best LTV:CAC: {best.channel}, {_ratio_text(best.ltv_to_cac, 2)} "
            f"({best.totals.customers:,} customers).")


def _spend(report: Report) -> list[str]:
    """Channels with spend by LTV:CAC; ROAS of every model in the HTML."""
    if not report.spend:
        return []
    return ["", "SPEND AND RETURN",
            f"  {_spend_answer(report)} CAC = spend / new customers; LTV:CAC = LTV / CAC; "
            "payback = CAC / MRR per customer, in months.", "",
            *text_table(["#", *_spend_headers(report)],
                        [[str(place), *_spend_cells(row, report)]
                         for place, row in enumerate(report.spend, start=1)], left=2),
            *_small_numbers_note(report, report.spend)]


def _html_spend(report: Report) -> list[str]:
    if not report.spend:
        return []
    roas = [MODEL_LABELS.get(m, m) for m in report.models]
    return ["<h3>Spend and return</h3>",
            f"<p>{_e(_spend_answer(report))} CAC = spend / new customers of the channel; "
            "LTV:CAC = LTV / CAC; payback = CAC / MRR per new customer (months); ROAS = "
            "attributed revenue / spend, per model.</p>",
            _html_table(["#", *_spend_headers(report)[:-1], *(f"ROAS {m}" for m in roas)],
                        [[place, *_spend_cells(row, report)[:-1],
                          *(_ratio_text(row.roas(m), 2) for m in report.models)]
                         for place, row in enumerate(report.spend, start=1)]),
            *_html_small_numbers(report, report.spend)]
