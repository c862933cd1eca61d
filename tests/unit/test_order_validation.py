import pytest

from devkit.orders import details_kwargs, make_details
from pedidos.domain.order import (
    CardBrand,
    InvalidOrder,
    OrderDetails,
    new_order_id,
    validate_idempotency_key,
    validate_order_id,
)


def test_a_valid_order_is_normalised() -> None:
    details = make_details(product_name="  Laptop HP  ", customer_email="Cliente@Example.CL")
    assert details.product_name == "Laptop HP"
    assert details.customer_email == "Cliente@example.cl"  # domain part is case-insensitive
    assert details.card_brand is CardBrand.VISA


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("customer_email", "not-an-email", "valid e-mail"),
        ("customer_email", "", "must not be empty"),
        ("customer_email", "a@b.c\r\nBcc: x@y.z", "valid e-mail"),
        ("customer_email", "a b@example.cl", "valid e-mail"),
        ("customer_email", "josé@example.cl", "valid e-mail"),
        ("product_name", "", "must not be empty"),
        ("product_name", "   ", "must not be empty"),
        ("product_name", "x" * 201, "at most 200"),
        ("bank", "Banco\x00Chile", "control characters"),
        ("shipping_address", "Calle 1\nBcc: x", "control characters"),
        ("shipping_region", 42, "must be a string"),
        ("payment_gateway", "BITCOIN", "known payment gateway"),
        ("card_brand", "DINERS", "known card brand"),
        ("card_brand", None, "required for card payments"),
        ("price_minor", 0, "greater than zero"),
        ("price_minor", -100, "greater than zero"),
        ("price_minor", 10**15, "exceeds"),
        ("price_minor", 12.5, "integer"),
        ("currency", "XXX", "unsupported currency"),
    ],
)
def test_each_rule_names_the_field(field: str, value: object, problem: str) -> None:
    with pytest.raises(InvalidOrder, match=problem) as caught:
        OrderDetails.create(**details_kwargs(**{field: value}))
    expected = {"price_minor": "price.amount_minor", "currency": "price.currency_code"}
    assert caught.value.field == expected.get(field, field)


def test_internationalised_domains_are_sent_as_punycode() -> None:
    assert make_details(customer_email="ana@ñandú.cl").customer_email == "ana@xn--and-6ma2c.cl"


def test_bank_transfer_needs_no_card_brand() -> None:
    details = make_details(payment_gateway="BANK_TRANSFER", card_brand=None)
    assert details.card_brand is None


def test_html_in_names_is_accepted_as_text() -> None:
    # Escaping is the renderer's job; the data itself is kept as the customer typed it.
    details = make_details(shipping_address="<script>alert(1)</script>")
    assert details.shipping_address == "<script>alert(1)</script>"


def test_idempotency_key_gives_a_stable_order_id_per_customer() -> None:
    first = new_order_id("a@example.cl", "key-1")
    assert first == new_order_id("a@example.cl", "key-1")
    assert first != new_order_id("b@example.cl", "key-1")
    assert new_order_id("a@example.cl", None) != new_order_id("a@example.cl", None)
    assert validate_order_id(first) == first


@pytest.mark.parametrize("key", ["k" * 129, "clave-ñ", "a\nb"])
def test_bad_idempotency_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidOrder, match="idempotency_key"):
        validate_idempotency_key(key)


def test_malformed_order_id_is_rejected() -> None:
    with pytest.raises(InvalidOrder, match="UUID"):
        validate_order_id("../etc/passwd")
