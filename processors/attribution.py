"""Acquisition journeys and the rule-based attribution models (DESIGN.md §5, §10).

Every model turns a journey t1…tn into exact weights summing to 1; `credit_lines` keeps the
touches with a positive weight, in journey order. Weights are Fractions so that the money split
(`processors.money.allocate`) never depends on float rounding; only time decay starts from a
double, by definition, and is made exact from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from processors.channels import UNATTRIBUTED
from processors.money import CurrencyTable, default_currency_table
from processors.touch import Touch

DIRECT = "Direct"
"""The channel `last_non_direct` looks past."""

MODELS = (
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "position_based",
    "time_decay",
    "w_shaped",
)

DAY_MS = 86_400_000
MAX_HALF_LIVES_IN_LOOKBACK = 1000
"""2^-1000 is still a positive double, so no journey touch loses its time-decay weight."""


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """How revenue is credited; weights are exact (Fractions, ints or decimal strings)."""

    models: tuple[str, ...] = MODELS
    """Models credited for every revenue event, in output order."""
    lookback_ms: int = 90 * DAY_MS
    """The journey is the touches in `[conversion − lookback, conversion]`."""
    half_life_ms: int = 7 * DAY_MS
    """A touch this much older than the conversion weighs half as much under `time_decay`."""
    position_based_weights: tuple[Fraction, Fraction, Fraction] = (
        Fraction(2, 5),
        Fraction(1, 5),
        Fraction(2, 5),
    )
    """First, shared middle, last."""
    w_shaped_weights: tuple[Fraction, Fraction, Fraction, Fraction] = (
        Fraction(3, 10),
        Fraction(3, 10),
        Fraction(3, 10),
        Fraction(1, 10),
    )
    """First touch, signup touch, last touch, shared rest."""
    reporting_currency: str = "USD"
    """Currency every amount is also reported in."""
    currency_table: CurrencyTable = field(default_factory=default_currency_table)
    """Exponents and static USD rates used for the reporting conversion."""

    def __post_init__(self) -> None:
        unknown = [model for model in self.models if model not in MODELS]
        if unknown or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be distinct names from {MODELS}, got {self.models}")
        if self.lookback_ms < 0 or self.half_life_ms <= 0:
            raise ValueError("lookback_ms must be >= 0 and half_life_ms > 0")
        if self.lookback_ms > MAX_HALF_LIVES_IN_LOOKBACK * self.half_life_ms:
            raise ValueError(
                f"lookback_ms may span at most {MAX_HALF_LIVES_IN_LOOKBACK} half-lives"
            )
        object.__setattr__(self, "models", tuple(self.models))
        for name, count in (("position_based_weights", 3), ("w_shaped_weights", 4)):
            shares = getattr(self, name)
            if len(shares) != count:
                raise ValueError(f"{name} needs {count} weights, got {shares}")
            object.__setattr__(self, name, _exact_shares(name, shares))
        if self.reporting_currency not in self.currency_table:
            raise ValueError(f"reporting currency {self.reporting_currency!r} is not in the table")


def _exact_shares(name: str, shares: Sequence[Fraction | int | str]) -> tuple[Fraction, ...]:
    """Floats are refused: 0.4 is not exactly two fifths, and the shares must sum to exactly 1."""
    if any(isinstance(share, float) for share in shares):
        raise ValueError(f"{name}: give exact weights (Fraction or decimal string), not floats")
    exact = tuple(Fraction(share) for share in shares)
    if any(share < 0 for share in exact) or sum(exact) != 1:
        raise ValueError(f"{name} must be non-negative and sum to 1, got {shares}")
    return exact


@dataclass(frozen=True, slots=True)
class CreditLine:
    """One touch's frozen share of a person's revenue under one model.

    The touch fields are None on the `Unattributed` line.
    """

    touch_event_id: str | None
    touch_ts: int | None
    channel: str
    source: str | None
    medium: str | None
    campaign: str | None
    weight: Fraction


UNATTRIBUTED_LINE = CreditLine(None, None, UNATTRIBUTED, None, None, None, Fraction(1))
"""The only line of a person who converted with an empty journey, under every model."""


def model_weights(
    model: str,
    journey: Sequence[Touch],
    conversion_ts: int,
    signup_ts: int | None,
    config: AttributionConfig,
) -> tuple[Fraction, ...]:
    """Exact weights of the journey's touches under `model`, summing to 1 (journey not empty).

    `signup_ts` is the person's first signup (None when unknown); only `w_shaped` uses it.
    """
    if not journey:
        raise ValueError("an empty journey has no touch weights: it is Unattributed")
    n = len(journey)
    if model == "first_touch":
        return _single(n, 0)
    if model == "last_touch":
        return _single(n, n - 1)
    if model == "last_non_direct":
        return _single(n, _last_non_direct_index(journey))
    if model == "linear":
        return (Fraction(1, n),) * n
    if model == "position_based":
        return _position_based(n, config.position_based_weights)
    if model == "time_decay":
        return _time_decay(journey, conversion_ts, config.half_life_ms)
    if model == "w_shaped":
        return _w_shaped(journey, signup_ts, config.w_shaped_weights)
    raise ValueError(f"unknown model {model!r}")


def credit_lines(
    model: str,
    journey: Sequence[Touch],
    conversion_ts: int,
    signup_ts: int | None,
    config: AttributionConfig,
) -> tuple[CreditLine, ...]:
    """The lines frozen at conversion: touches with weight > 0 in journey order.

    An empty journey gives the single `Unattributed` line with weight 1.
    """
    if not journey:
        return (UNATTRIBUTED_LINE,)
    weights = model_weights(model, journey, conversion_ts, signup_ts, config)
    return tuple(
        CreditLine(t.event_id, t.ts, t.channel, t.source, t.medium, t.campaign, weight)
        for t, weight in zip(journey, weights, strict=True)
        if weight > 0
    )


def _single(n: int, winner: int) -> tuple[Fraction, ...]:
    return tuple(Fraction(1 if index == winner else 0) for index in range(n))


def _last_non_direct_index(journey: Sequence[Touch]) -> int:
    """The last touch whose channel is not Direct; the last touch when all are Direct."""
    for index in range(len(journey) - 1, -1, -1):
        if journey[index].channel != DIRECT:
            return index
    return len(journey) - 1


def _position_based(n: int, shares: tuple[Fraction, ...]) -> tuple[Fraction, ...]:
    """U-shape: first and last get their shares, the middle share is split among the others.

    With no middle touches (n = 2) the middle share is split equally between the two ends, as
    W-shaped does with its rest share; n = 1 takes everything.
    """
    first, middle, last = shares
    if n == 1:
        return (Fraction(1),)
    if n == 2:
        return (first + middle / 2, last + middle / 2)
    each_middle = middle / (n - 2)
    return (first, *(each_middle,) * (n - 2), last)


def _time_decay(
    journey: Sequence[Touch], conversion_ts: int, half_life_ms: int
) -> tuple[Fraction, ...]:
    """`2 ** -(age_ms / half_life_ms)` in double precision, made exact, then normalised.

    Each double is a dyadic rational, so scaling all of them to the largest denominator (a power
    of two) gives integer numerators and the normalisation needs no float arithmetic.
    """
    decays = [Fraction(2.0 ** -((conversion_ts - t.ts) / half_life_ms)) for t in journey]
    denominator = max(decay.denominator for decay in decays)
    numerators = [decay.numerator * (denominator // decay.denominator) for decay in decays]
    total = sum(numerators)
    return tuple(Fraction(numerator, total) for numerator in numerators)


def _w_shaped(
    journey: Sequence[Touch], signup_ts: int | None, shares: tuple[Fraction, ...]
) -> tuple[Fraction, ...]:
    """30 % first, 30 % signup touch, 30 % last, 10 % shared by the rest (defaults).

    The signup touch is the last journey touch at or before the first signup, t1 when there is
    none. Coinciding milestones add their shares; with no other touches the rest share is split
    equally by the distinct milestone touches (n = 2, signup before t2 gives 65 / 35).
    """
    first_share, signup_share, last_share, rest_share = shares
    n = len(journey)
    weights = [Fraction(0)] * n
    milestones = (0, _signup_index(journey, signup_ts), n - 1)
    for index, share in zip(milestones, (first_share, signup_share, last_share), strict=True):
        weights[index] += share
    others = [index for index in range(n) if index not in milestones]
    sharers = others or sorted(set(milestones))
    for index in sharers:
        weights[index] += rest_share / len(sharers)
    return tuple(weights)


def _signup_index(journey: Sequence[Touch], signup_ts: int | None) -> int:
    if signup_ts is None:
        return 0
    at_or_before = [index for index, touch in enumerate(journey) if touch.ts <= signup_ts]
    return at_or_before[-1] if at_or_before else 0
