from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import money

D = Decimal


def test_split_gives_leftover_cents_to_largest_remainders():
    # 100.00 in thirds: 33.333.. each, one cent left, the tie goes to the earliest part.
    assert money.split(D("100.00"), [D(1), D(1), D(1)], "USD") == [D("33.34"), D("33.33"), D("33.33")]


def test_split_largest_remainder_beats_order():
    # 0.05 by 0.6/0.4: exact 3.0 and 2.0 cents; 0.10 by 0.15/0.85: 1.5 and 8.5 → tie → first.
    assert money.split(D("0.05"), [D("0.6"), D("0.4")], "USD") == [D("0.03"), D("0.02")]
    assert money.split(D("0.10"), [D("0.15"), D("0.85")], "USD") == [D("0.02"), D("0.08")]
    # 1.00 by 0.2/0.35/0.45: 20, 35, 45 cents exactly.
    assert money.split(D("1.00"), [D("0.2"), D("0.35"), D("0.45")], "USD") == [D("0.20"), D("0.35"), D("0.45")]
    # 0.01 by 0.3/0.7: the larger remainder (0.7 cents) takes the cent.
    assert money.split(D("0.01"), [D("0.3"), D("0.7")], "USD") == [D("0.00"), D("0.01")]


def test_split_respects_currency_minor_units():
    assert money.split(D("100"), [D(1), D(2)], "JPY") == [D("33"), D("67")]
    assert money.split(D("1.000"), [D(1), D(1), D(1)], "KWD") == [D("0.334"), D("0.333"), D("0.333")]


@given(
    cents=st.integers(min_value=0, max_value=10**14 - 1),
    weights=st.lists(st.decimals(min_value=0, max_value=1, places=6), min_size=1, max_size=12).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_split_always_adds_up_to_the_cent(cents, weights):
    amount = D(cents).scaleb(-2)
    parts = money.split(amount, weights, "USD")
    assert sum(parts) == amount
    assert all(p >= 0 for p in parts)
    assert all(p == p.quantize(D("0.01")) for p in parts)
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = amount * weight / total
        assert abs(part - exact) < D("0.01")  # no part strays a cent or more from its share


@given(cents=st.integers(min_value=1, max_value=10**14 - 1))
def test_one_part_takes_everything(cents):
    amount = D(cents).scaleb(-2)
    assert money.split(amount, [D("0.37")], "USD") == [amount]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("120.00", D("120.00")), ("0.01", D("0.01")), ("120.1", D("120.10")), ("999999999999.99", D("999999999999.99")), (7, D("7.00")), ("120.100", D("120.10"))],
)
def test_parse_amount_accepts(raw, expected):
    assert money.parse_amount(raw, "USD") == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0", "greater than zero"),
        ("-1.00", "greater than zero"),
        ("1.001", "At most 2 decimals"),
        ("1000000000000.00", "12 integer digits"),
        ("abc", "decimal string"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (True, "decimal string"),
        (None, "decimal string"),
    ],
)
def test_parse_amount_refuses(raw, problem):
    with pytest.raises(money.MoneyError, match=problem):
        money.parse_amount(raw, "USD")


def test_parse_amount_uses_the_currency_decimals():
    assert money.parse_amount("1500", "JPY") == D("1500")
    with pytest.raises(money.MoneyError, match="At most 0 decimals"):
        money.parse_amount("1500.5", "JPY")
    assert money.parse_amount("1.234", "KWD") == D("1.234")


def test_multiply_rounds_half_up():
    assert money.multiply(D("0.05"), D("0.10"), "USD") == D("0.01")  # 0.005 → 0.01
    assert money.multiply(D("0.04"), D("0.10"), "USD") == D("0.00")  # 0.004 → 0.00
    assert money.multiply(D("33.35"), D("0.15"), "USD") == D("5.00")  # 5.0025 → 5.00


def test_minor_units_round_trip():
    assert money.to_minor(D("120.05"), "USD") == 12005
    assert money.from_minor(12005, "USD") == D("120.05")
    assert money.format_minor(12005, "USD") == "120.05"
    assert money.format_minor(100, "JPY") == "100"
    assert money.format_minor(None, "USD") is None
    with pytest.raises(money.MoneyError):
        money.to_minor(D("1.005"), "USD")
