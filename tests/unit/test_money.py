from decimal import Decimal

import pytest

from pedidos.domain.money import InvalidMoney, Money


def test_clp_has_no_minor_unit_and_formats_the_chilean_way() -> None:
    price = Money(12_990)
    assert price.currency == "CLP"
    assert price.major == Decimal(12990)
    assert price.format() == "$12.990"


def test_usd_keeps_cents_exactly() -> None:
    price = Money(1_999, "USD")
    assert price.major == Decimal("19.99")
    assert price.format() == "US$19,99"


@pytest.mark.parametrize("amount", [0, -1, -(10**9)])
def test_amount_must_be_positive(amount: int) -> None:
    with pytest.raises(InvalidMoney, match="greater than zero"):
        Money(amount)


def test_amount_is_bounded() -> None:
    Money(100_000_000)
    with pytest.raises(InvalidMoney, match="exceeds"):
        Money(100_000_001)
    with pytest.raises(InvalidMoney, match="exceeds"):
        Money(10_000_000_001, "USD")


@pytest.mark.parametrize("amount", [1.5, float("nan"), "100", True])
def test_amount_must_be_an_integer(amount: object) -> None:
    with pytest.raises(InvalidMoney):
        Money(amount)  # type: ignore[arg-type]


def test_unknown_currency_is_rejected() -> None:
    with pytest.raises(InvalidMoney, match="unsupported currency"):
        Money(100, "XXX")
