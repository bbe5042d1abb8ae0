"""Exact money: largest-remainder allocation and static-rate conversion (DESIGN.md §5, §10).

Amounts are integer minor units everywhere. Nothing here touches a float, so two implementations
of the design agree to the cent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources
from math import lcm
from types import MappingProxyType

import orjson

Rate = str | Decimal | Fraction | int
"""An exact rate: a decimal string such as `"1.08"`, a Decimal, a Fraction or an int."""


def allocate(amount: int, weights: Sequence[Fraction]) -> list[int]:
    """Split `amount` in proportion to `weights` so that the parts sum to `amount` exactly.

    Largest remainder, computed on integers over the weights' common denominator (see
    `allocate_by_parts`). Weights need not sum to 1: they are normalised.
    """
    return allocate_by_parts(amount, integer_parts(weights))


def integer_parts(weights: Sequence[Fraction]) -> list[int]:
    """The weights over their common denominator: integers in exactly the same proportions.

    Compute once and call `allocate_by_parts` for every amount split by the same weights.
    """
    denominator = lcm(*(weight.denominator for weight in weights)) if weights else 1
    return [weight.numerator * (denominator // weight.denominator) for weight in weights]


def allocate_by_parts(amount: int, parts: Sequence[int]) -> list[int]:
    """Largest remainder over integer parts: each gets the floor of `amount × part / total`, then
    the units left over go one each to the largest remainders, ties to the earlier index.

    A zero part gets 0. A negative amount is split by magnitude and negated, so a full refund
    mirrors its payment.
    """
    total = sum(parts)
    if total <= 0 or any(part < 0 for part in parts):
        raise ValueError(f"weights must be non-negative with a positive sum, got {parts!r}")
    magnitude = abs(amount)
    shares = [divmod(magnitude * part, total) for part in parts]
    quotas = [quota for quota, _ in shares]
    left_over = magnitude - sum(quotas)
    if left_over:
        by_remainder = sorted(range(len(shares)), key=lambda index: (-shares[index][1], index))
        for index in by_remainder[:left_over]:
            quotas[index] += 1
    return quotas if amount >= 0 else [-quota for quota in quotas]


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: minor-unit exponent (JPY 0, USD 2, KWD 3) and USD per major unit."""

    code: str
    exponent: int
    usd_per_unit: Fraction


@dataclass(frozen=True, slots=True)
class CurrencyTable:
    """The currencies the pipeline can convert, keyed by upper-case ISO code. Read-only."""

    currencies: Mapping[str, Currency]

    def __post_init__(self) -> None:
        object.__setattr__(self, "currencies", MappingProxyType(dict(self.currencies)))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Mapping[str, object]]) -> CurrencyTable:
        """Build from the data file shape: `{"EUR": {"exponent": 2, "usd_per_unit": "1.08"}}`."""
        currencies = {}
        for code, entry in data.items():
            exponent = entry["exponent"]
            if not isinstance(exponent, int) or isinstance(exponent, bool) or exponent < 0:
                raise ValueError(f"{code}: exponent must be an integer >= 0, got {exponent!r}")
            currencies[code] = Currency(code, exponent, exact_rate(code, entry["usd_per_unit"]))
        return cls(currencies)

    def with_rates(self, rates: Mapping[str, Rate]) -> CurrencyTable:
        """A copy with the USD rates of known currencies replaced (configured reporting rates)."""
        unknown = sorted(set(rates) - set(self.currencies))
        if unknown:
            raise ValueError(f"no exponent known for {', '.join(unknown)}: use from_mapping")
        updated = dict(self.currencies)
        for code, rate in rates.items():
            updated[code] = replace(updated[code], usd_per_unit=exact_rate(code, rate))
        return CurrencyTable(updated)

    def __contains__(self, code: object) -> bool:
        return code in self.currencies

    def __getitem__(self, code: str) -> Currency:
        try:
            return self.currencies[code]
        except KeyError:
            raise KeyError(f"unknown currency {code!r}") from None


def exact_rate(code: str, rate: object) -> Fraction:
    """The rate as an exact positive Fraction; floats are refused because they are not exact."""
    if isinstance(rate, float | bool) or not isinstance(rate, str | Decimal | Fraction | int):
        raise ValueError(f"{code}: give the rate as a decimal string, got {rate!r}")
    value = Fraction(rate)
    if value <= 0:
        raise ValueError(f"{code}: rate must be positive, got {rate!r}")
    return value


@cache
def default_currency_table() -> CurrencyTable:
    """The packaged static table (`processors/data/currencies.json`), loaded once."""
    data = resources.files("processors").joinpath("data/currencies.json").read_bytes()
    return CurrencyTable.from_mapping(orjson.loads(data)["currencies"])


def is_known_currency(code: str, table: CurrencyTable | None = None) -> bool:
    """True when `code` can be converted by `table` (the default table when omitted)."""
    return code in (default_currency_table() if table is None else table)


def to_reporting(
    amount_minor: int, currency: str, table: CurrencyTable, reporting_currency: str
) -> int:
    """Convert minor units of `currency` into minor units of `reporting_currency`.

    `amount × rate_c / rate_r × 10^(exp_r − exp_c)`, exact, rounded half away from zero; the
    rounding is symmetric, so converting a negated amount negates the result.
    """
    if currency == reporting_currency:
        return amount_minor
    source, target = table[currency], table[reporting_currency]
    numerator = source.usd_per_unit.numerator * target.usd_per_unit.denominator
    denominator = source.usd_per_unit.denominator * target.usd_per_unit.numerator
    shift = target.exponent - source.exponent
    if shift >= 0:
        numerator *= 10**shift
    else:
        denominator *= 10**-shift
    return _divide_half_away_from_zero(amount_minor * numerator, denominator)


def _divide_half_away_from_zero(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient
