from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.money import (
    CurrencyTable,
    allocate,
    allocate_by_parts,
    default_currency_table,
    integer_parts,
    is_known_currency,
    to_reporting,
)

THIRDS = [Fraction(1, 3)] * 3
HALVES = [Fraction(1, 2)] * 2


@pytest.mark.parametrize(
    ("amount", "weights", "expected"),
    [
        (100, THIRDS, [34, 33, 33]),
        (1, THIRDS, [1, 0, 0]),
        (2, THIRDS, [1, 1, 0]),
        (-1, THIRDS, [-1, 0, 0]),
        (-100, THIRDS, [-34, -33, -33]),
        (1, HALVES, [1, 0]),
        (10, HALVES, [5, 5]),
        (7, [Fraction(2, 5), Fraction(1, 5), Fraction(2, 5)], [3, 1, 3]),
        (5, [Fraction(0), Fraction(1)], [0, 5]),
        (1, [Fraction(0), Fraction(1, 2), Fraction(1, 2)], [0, 1, 0]),
        (0, THIRDS, [0, 0, 0]),
        (3, [Fraction(1), Fraction(1), Fraction(2)], [1, 1, 1]),
        (1, [Fraction(1, 4), Fraction(3, 4)], [0, 1]),
    ],
)
def test_allocate_splits_by_largest_remainder_with_ties_to_the_earlier_index(
    amount, weights, expected
):
    assert allocate(amount, weights) == expected


@pytest.mark.parametrize(
    "weights",
    [[], [Fraction(0), Fraction(0)], [Fraction(-1, 2), Fraction(3, 2)]],
)
def test_allocate_refuses_weights_without_a_positive_non_negative_split(weights):
    with pytest.raises(ValueError):
        allocate(10, weights)


weights_strategy = st.lists(
    st.fractions(min_value=0, max_value=5, max_denominator=1000), min_size=1, max_size=8
).filter(lambda weights: sum(weights) > 0)


@settings(derandomize=True)
@given(st.integers(min_value=-(10**12), max_value=10**12), weights_strategy)
def test_allocate_is_exact_deterministic_and_close_to_each_share(amount, weights):
    parts = allocate(amount, weights)
    assert sum(parts) == amount
    assert parts == allocate(amount, list(weights))
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part - amount * weight / total) < 1
        if weight == 0:
            assert part == 0


def test_integer_parts_keep_the_proportions_of_the_weights():
    parts = integer_parts([Fraction(2, 5), Fraction(1, 10), Fraction(1, 2)])
    assert parts == [4, 1, 5]
    assert allocate_by_parts(11, parts) == allocate(
        11, [Fraction(2, 5), Fraction(1, 10), Fraction(1, 2)]
    )


@settings(derandomize=True)
@given(st.integers(min_value=0, max_value=10**12), weights_strategy)
def test_allocate_mirrors_on_negation(amount, weights):
    assert allocate(-amount, weights) == [-part for part in allocate(amount, weights)]


def test_default_table_knows_exponents_of_zero_two_and_three_decimal_currencies():
    table = default_currency_table()
    assert table["JPY"].exponent == 0
    assert table["USD"].exponent == 2
    assert table["KWD"].exponent == 3
    assert table["BHD"].exponent == 3
    assert table["USD"].usd_per_unit == 1
    assert len(table.currencies) >= 15


@pytest.mark.parametrize(
    ("code", "known"), [("USD", True), ("EUR", True), ("JPY", True), ("XYZ", False), ("usd", False)]
)
def test_is_known_currency_uses_upper_case_iso_codes(code, known):
    assert is_known_currency(code) is known


@pytest.mark.parametrize(
    ("amount", "currency", "reporting", "expected"),
    [
        (1234, "USD", "USD", 1234),
        (1000, "EUR", "USD", 1080),
        (1000, "JPY", "USD", 670),
        (1, "JPY", "USD", 1),
        (100, "USD", "JPY", 149),
        (1000, "KWD", "USD", 325),
        (1, "KWD", "USD", 0),
        (2, "KWD", "USD", 1),
        (1, "USD", "KWD", 3),
        (108, "USD", "EUR", 100),
        (-1000, "EUR", "USD", -1080),
    ],
)
def test_to_reporting_converts_between_minor_units_of_any_exponent(
    amount, currency, reporting, expected
):
    assert to_reporting(amount, currency, default_currency_table(), reporting) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "rate", "expected"),
    [
        (1, "EUR", "1.5", 2),
        (3, "EUR", "1.5", 5),
        (-1, "EUR", "1.5", -2),
        (-3, "EUR", "1.5", -5),
        (1, "KWD", "5", 1),
        (-1, "KWD", "5", -1),
        (1, "EUR", "1.49", 1),
    ],
)
def test_to_reporting_rounds_half_away_from_zero(amount, currency, rate, expected):
    table = default_currency_table().with_rates({currency: rate})
    assert to_reporting(amount, currency, table, "USD") == expected


@settings(derandomize=True)
@given(
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from(sorted(default_currency_table().currencies)),
    st.sampled_from(sorted(default_currency_table().currencies)),
)
def test_to_reporting_of_a_negated_amount_is_negated(amount, currency, reporting):
    table = default_currency_table()
    assert to_reporting(-amount, currency, table, reporting) == -to_reporting(
        amount, currency, table, reporting
    )


def test_with_rates_replaces_rates_exactly_and_keeps_the_original_table():
    table = default_currency_table()
    configured = table.with_rates({"EUR": "1.1", "GBP": Decimal("1.25"), "CHF": Fraction(9, 8)})
    assert configured["EUR"].usd_per_unit == Fraction(11, 10)
    assert configured["GBP"].usd_per_unit == Fraction(5, 4)
    assert configured["CHF"].exponent == 2
    assert table["EUR"].usd_per_unit == Fraction(27, 25)


@pytest.mark.parametrize(
    "rates", [{"XYZ": "1"}, {"EUR": 1.1}, {"EUR": "0"}, {"EUR": "-1"}, {"EUR": True}]
)
def test_with_rates_refuses_unknown_codes_and_inexact_or_non_positive_rates(rates):
    with pytest.raises(ValueError):
        default_currency_table().with_rates(rates)


def test_a_table_from_a_mapping_converts_its_own_currencies():
    table = CurrencyTable.from_mapping(
        {
            "USD": {"exponent": 2, "usd_per_unit": "1"},
            "TND": {"exponent": 3, "usd_per_unit": "0.32"},
        }
    )
    assert to_reporting(1000, "TND", table, "USD") == 32
    with pytest.raises(ValueError):
        CurrencyTable.from_mapping({"ABC": {"exponent": -1, "usd_per_unit": "1"}})


def test_converting_an_unknown_currency_fails_loudly():
    with pytest.raises(KeyError, match="XYZ"):
        to_reporting(100, "XYZ", default_currency_table(), "USD")


def test_a_currency_table_is_read_only():
    with pytest.raises(TypeError):
        default_currency_table().currencies["XYZ"] = default_currency_table()["USD"]  # type: ignore[index]
