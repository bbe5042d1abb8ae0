"""The reference subscriber's reading of `credit/2`: the newest assert per credit id, checked
against the sum of every record, with redeliveries ignored by `(credit_id, revision, op)`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.credits import current_totals, differences, render
from readmodels.ledger import Ledger

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
AMOUNTS = ("amount_minor", "reporting_amount_minor")


def example(name: str) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads((EXAMPLES / f"{name}.json").read_bytes())
    return record


FIRST = example("credit.v2.payment_assert")
RETRACT = example("credit.v2.payment_retract")
CORRECTION = example("credit.v2.payment_correction_assert")
REFUND = example("credit.v2.refund_assert")
STORY = (FIRST, RETRACT, CORRECTION, REFUND)
CHANNELS = ("Paid Search", "Email", "Direct")


def fold(*records: dict[str, Any]) -> Ledger:
    ledger = Ledger()
    for record in records:
        ledger.add(record)
    return ledger


def retract(record: dict[str, Any]) -> dict[str, Any]:
    lines = [{**line, **{f: -line[f] for f in AMOUNTS}} for line in record["lines"]]
    return {**record, "op": "retract", **{f: -record[f] for f in AMOUNTS}, "lines": lines}


def test_a_correction_replaces_the_credit_and_both_readings_agree():
    ledger = fold(*STORY)
    totals = current_totals(ledger)
    assert len(ledger.current) == 2
    assert ledger.current["pay-0001/linear"]["revision"] == 2
    assert totals.by_model == {"linear": 5292 - 1620}
    assert totals.by_model_channel == {("linear", c): 1764 - 540 for c in CHANNELS}
    assert differences(ledger) == {}


def test_records_delivered_again_after_a_crash_are_counted_once():
    ledger = fold(*STORY, FIRST, RETRACT, CORRECTION, REFUND, CORRECTION)
    assert ledger.duplicates == 5
    assert len(ledger.current) == 2
    assert current_totals(ledger) == current_totals(fold(*STORY))
    assert differences(ledger) == {}


def test_a_retract_waiting_for_its_assert_keeps_the_credit_and_shows_in_the_check():
    ledger = fold(FIRST, RETRACT)
    assert current_totals(ledger).by_model == {"linear": 5292}
    assert differences(ledger) == {("linear", None): -5292, ("linear", "Email"): -2646,
                                   ("linear", "Direct"): -2646}
    ledger.add(CORRECTION)
    assert current_totals(ledger).by_model_channel == {("linear", c): 1764 for c in CHANNELS}
    assert differences(ledger) == {}


def test_an_older_revision_arriving_late_never_replaces_a_newer_one():
    ledger = fold(CORRECTION)
    ledger.add(FIRST)
    assert ledger.current["pay-0001/linear"]["revision"] == 2
    assert current_totals(ledger).by_model_channel == {("linear", c): 1764 for c in CHANNELS}
    assert differences(ledger)  # the first assert is summed, its retract is not here yet
    ledger.add(RETRACT)
    assert differences(ledger) == {}


def test_a_channel_that_a_correction_leaves_without_credit_is_no_longer_listed():
    moved = {**CORRECTION, "lines": [{**line, "channel": "Paid Search"}
                                     for line in CORRECTION["lines"]]}
    ledger = fold(FIRST, RETRACT, moved)
    totals = current_totals(ledger)
    assert totals.by_model_channel == {("linear", "Paid Search"): 5292}
    assert totals.channels() == ["Paid Search"]
    assert differences(ledger) == {}


def test_a_credit_v1_record_reads_as_the_assert_of_revision_1():
    v1 = example("credit.v1.payment_linear")
    ledger = fold(v1, v1)
    assert (len(ledger.current), ledger.duplicates) == (1, 1)
    assert current_totals(ledger).by_model == {"linear": 5292}
    assert differences(ledger) == {}


def test_render_shows_the_current_credits_and_the_check():
    text = render(fold(*STORY))
    assert text.startswith("2 current credits from 4 records")
    assert "Paid Search" in text and "36.72" in text
    assert text.endswith("the sum of every record agrees with the current credits")
    assert "linear total -52.92" in render(fold(FIRST, RETRACT))
    assert render(Ledger()) == "no credits yet"


# Any arrival order, any redelivery: the newest asserts are the totals, and the sum agrees.


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every record of a few credits' correction histories, delivered in any order with some
    records twice, and each credit's newest assert."""
    records, newest = [], []
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["payment", "refund"]))
        sign = 1 if kind == "payment" else -1
        amount = draw(st.integers(1, 10**6))
        previous: dict[str, Any] | None = None
        for revision in range(1, draw(st.integers(1, 4)) + 1):
            channels = draw(st.lists(st.sampled_from([*CHANNELS, "Organic Search"]),
                                     min_size=1, max_size=3))
            cuts = sorted(draw(st.lists(st.integers(0, amount), min_size=len(channels) - 1,
                                        max_size=len(channels) - 1)))
            shares = [b - a for a, b in zip([0, *cuts], [*cuts, amount], strict=True)]
            lines = [{**FIRST["lines"][0], "touch_event_id": f"pv-{i}", "channel": channel,
                      "weight": 1 / len(channels), "amount_minor": sign * share,
                      "reporting_amount_minor": sign * share}
                     for i, (channel, share) in enumerate(zip(channels, shares, strict=True))]
            asserted = {**FIRST, "credit_id": f"rev-{index}/linear",
                        "revenue_event_id": f"rev-{index}", "person_id": f"user-{index}",
                        "kind": kind, "op": "assert", "revision": revision,
                        "cause": None if revision == 1 else "late_touch",
                        "amount_minor": sign * amount, "reporting_amount_minor": sign * amount,
                        "lines": lines}
            if previous is not None:
                records.append(retract(previous))
            records.append(asserted)
            previous = asserted
        assert previous is not None
        newest.append(previous)
    redelivered = draw(st.lists(st.sampled_from(records), max_size=6))
    return draw(st.permutations([*records, *redelivered])), newest


@settings(max_examples=200, derandomize=True, deadline=None)
@given(histories())
def test_whatever_the_order_the_newest_asserts_are_the_totals_and_the_sum_agrees(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    delivered, newest = case
    ledger = fold(*delivered)
    totals = current_totals(ledger)
    expected: Counter[tuple[str, str]] = Counter()
    for record in newest:
        for line in record["lines"]:
            expected["linear", line["channel"]] += line["reporting_amount_minor"]
    assert {c: r["revision"] for c, r in ledger.current.items()} == {
        r["credit_id"]: r["revision"] for r in newest}
    assert totals.by_model == {"linear": sum(r["reporting_amount_minor"] for r in newest)}
    assert {k: v for k, v in totals.by_model_channel.items() if v} == {
        k: v for k, v in expected.items() if v}
    assert differences(ledger) == {}
    assert ledger.duplicates == len(delivered) - len({
        (r["credit_id"], r["revision"], r["op"]) for r in delivered})
