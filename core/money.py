"""Money: the one place that knows about currencies' minor units, rounding and splitting.

Amounts are ``Decimal`` in code and whole minor units (cents) in the database, so that sums
are exact on every database (SQLite would sum decimal columns as floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from functools import cache

from babel.numbers import get_currency_precision, list_currencies

MAX_INTEGER_DIGITS = 12


class MoneyError(ValueError):
    """An amount that cannot be money in the given currency."""


@cache
def known_currencies() -> frozenset[str]:
    return frozenset(code for code in list_currencies() if len(code) == 3 and code.isupper())


def is_currency(code: str) -> bool:
    return isinstance(code, str) and code in known_currencies()


@cache
def minor_digits(currency: str) -> int:
    """Decimals of the currency's minor unit: 2 for USD, 0 for JPY, 3 for KWD."""
    return int(get_currency_precision(currency))


@cache
def _unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit."""
    return amount.quantize(_unit(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact conversion of an amount already in minor-unit precision to an integer."""
    scaled = amount.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_digits(currency)).quantize(_unit(currency))


def format_minor(minor: int | None, currency: str) -> str | None:
    """The contract's money string: ``"120.00"``."""
    if minor is None:
        return None
    return str(from_minor(minor, currency))


def parse_amount(raw, currency: str, *, allow_zero: bool = False) -> Decimal:
    """Parse a client amount: a positive decimal with at most 12 integer digits and at most
    the currency's minor-unit decimals. Raises ``MoneyError`` with a sentence for a person."""
    if isinstance(raw, bool) or raw is None:
        raise MoneyError("Must be a decimal string such as \"120.00\".")
    if isinstance(raw, float):
        raw = repr(raw)
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError("Must be a decimal string such as \"120.00\".") from None
    if not value.is_finite():
        raise MoneyError("Must be a finite decimal.")
    if value < 0 or (value == 0 and not allow_zero):
        raise MoneyError("Must be greater than zero." if not allow_zero else "Must not be negative.")
    decimals = max(0, -value.as_tuple().exponent)
    if decimals > minor_digits(currency):
        # "120.10" is fine for USD, "120.105" is not; trailing zeros beyond are tolerated.
        normalized = value.normalize()
        if max(0, -normalized.as_tuple().exponent) > minor_digits(currency):
            raise MoneyError(f"At most {minor_digits(currency)} decimals are allowed in {currency}.")
    if int(value) >= 10**MAX_INTEGER_DIGITS:
        raise MoneyError(f"At most {MAX_INTEGER_DIGITS} integer digits are allowed.")
    return quantize(value, currency)


def multiply(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """``amount × rate`` rounded half-up to the minor unit (contract rules 4 and 5)."""
    return quantize(amount * rate, currency)


def prorate(amount: Decimal, part: Decimal, whole: Decimal, currency: str) -> Decimal:
    """``amount × part / whole`` rounded half-up to the minor unit, in exact integer arithmetic
    (amounts non-negative, ``whole`` positive)."""
    a, p, w = (to_minor(quantize(x, currency), currency) for x in (amount, part, whole))
    if a < 0 or p < 0 or w <= 0:
        raise MoneyError("prorate takes non-negative amounts and a positive whole")
    return from_minor((2 * a * p + w) // (2 * w), currency)


def split(amount: Decimal, weights: Sequence[Decimal | Fraction], currency: str, *, tie_order: Sequence[int] | None = None) -> list[Decimal]:
    """Split ``amount`` by ``weights`` into minor-unit parts that add up to it exactly.

    Largest remainder: every part first gets its share rounded down; the units left over go
    one each to the parts with the largest remainders; equal remainders go first to the part
    earliest in ``tie_order`` (default: list order). Weights are exact (``Decimal`` or
    ``Fraction``), non-negative, with a positive sum; they need not sum to 1.
    """
    if not weights:
        raise MoneyError("Nothing to split between.")
    exact_weights = [Fraction(w) for w in weights]
    total_weight = sum(exact_weights, Fraction(0))
    if total_weight <= 0 or any(w < 0 for w in exact_weights):
        raise MoneyError("Weights must be non-negative with a positive sum.")
    order = list(tie_order) if tie_order is not None else list(range(len(weights)))
    digits = minor_digits(currency)
    total_minor = int(amount.scaleb(digits).to_integral_value(rounding=ROUND_HALF_UP))
    sign = -1 if total_minor < 0 else 1
    total_minor = abs(total_minor)
    floors: list[int] = []
    remainders: list[tuple[Fraction, int, int]] = []
    for index, weight in enumerate(exact_weights):
        exact = total_minor * weight / total_weight
        floor = exact.numerator // exact.denominator
        floors.append(floor)
        remainders.append((exact - floor, order[index], index))
    left = total_minor - sum(floors)
    for _, _, index in sorted(remainders, key=lambda item: (-item[0], item[1]))[:left]:
        floors[index] += 1
    return [from_minor(sign * part, currency) for part in floors]
