from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.orders import details_kwargs, make_details
from pedidos.domain.order import (
    CardBrand,
    InvalidOrder,
    OrderDetails,
    _clean_email,
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
    secret = b"s" * 32
    first = new_order_id("a@example.cl", "key-1", secret)
    assert first == new_order_id("a@example.cl", "key-1", secret)
    assert first != new_order_id("b@example.cl", "key-1", secret)
    assert new_order_id("a@example.cl", None, secret) != new_order_id("a@example.cl", None, secret)
    assert validate_order_id(first) == first


@pytest.mark.parametrize("key", ["k" * 129, "clave-ñ", "a\nb"])
def test_bad_idempotency_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidOrder, match="idempotency_key"):
        validate_idempotency_key(key)


def test_malformed_order_id_is_rejected() -> None:
    with pytest.raises(InvalidOrder, match="UUID"):
        validate_order_id("../etc/passwd")


# -- the e-mail fast path: the same answer as email-validator, without running it -------------

# Pieces that each touch one of email-validator's rules: case, mailbox names it lowercases,
# quoting, dots, IDN, special-use and numeric top-level domains, hyphens, long labels.
_LOCAL_PARTS = st.one_of(
    st.sampled_from(
        ["ana", "Ana.Perez", "a+b", "a..b", ".a", "a.", "Postmaster", "INFO", "abuse", "x_y-z",
         "o'neil", "a{b}", '"quoted"', "a\\b", "a(b)", "josé", "a<b", "", "a" * 64, "a" * 65]
    ),
    st.text(alphabet="aZ0.+-_'\"@<>()[]\\ñ", min_size=1, max_size=12),
)  # fmt: skip
_DOMAINS = st.one_of(
    st.sampled_from(
        ["example.cl", "Example.CL", "mail.example.com", "ñandú.cl", "xn--and-6ma2c.cl",
         "example.test", "localhost", "example.invalid", "host.local", "a.b", "example",
         "example.123", "-bad.cl", "bad-.cl", "ab--cd.cl", "xn--ab.cl", "e" * 64 + ".cl",
         "e" * 63 + ".cl", "example.cl.", "[127.0.0.1]", "exa_mple.cl", "a@b.cl", ""]
    ),
    st.text(alphabet="aZ0.-_ñ@", min_size=1, max_size=12),
)  # fmt: skip


def _full_validation(value: str) -> str | InvalidOrder:
    """What `_clean_email` answered before its fast path: email-validator on every address."""
    try:
        with patch("pedidos.domain.order._is_plain_address", return_value=False):
            return _clean_email(value)
    except InvalidOrder as exc:
        return exc


def _answer(value: str) -> str | InvalidOrder:
    try:
        return _clean_email(value)
    except InvalidOrder as exc:
        return exc


def _same(got: str | InvalidOrder, expected: str | InvalidOrder) -> bool:
    if isinstance(expected, InvalidOrder):
        return isinstance(got, InvalidOrder) and str(got) == str(expected)
    return got == expected


@settings(max_examples=400, deadline=None)
@given(local=_LOCAL_PARTS, domain=_DOMAINS, padding=st.integers(0, 200))
def test_the_email_fast_path_answers_as_email_validator(
    local: str, domain: str, padding: int
) -> None:
    # Twice: the second answer may come from the remembered domain.
    for value in (f"{local}@{domain}", f"{local}@{domain}", f"{'p' * padding}{local}@{domain}"):
        assert _same(_answer(value), _full_validation(value)), value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ana@example.cl", "ana@example.cl"),
        ("Ana@Example.CL", "Ana@example.cl"),  # the domain is lowercased, the local part kept
        ("Postmaster@example.cl", "postmaster@example.cl"),  # RFC 2142 names are lowercased
        ("ana@ñandú.cl", "ana@xn--and-6ma2c.cl"),
    ],
)
def test_addresses_at_a_known_domain_are_normalised_as_before(value: str, expected: str) -> None:
    _clean_email("warm@example.cl")  # example.cl is now a known domain
    assert _clean_email(value) == expected


# Punycode of two labels of 中 (80 characters, 240 bytes in UTF-8): short as ASCII, too long
# once email-validator turns it back into Unicode behind a local part of 11 characters.
_LONG_IDN = "xn--fiq" + "a" * 49 + ".xn--fiq" + "a" * 29 + ".cl"


@pytest.mark.parametrize(
    "value", ["a..b@example.cl", "ana@example.test", "ana@localhost", f"abcdefghijk@{_LONG_IDN}"]
)
def test_addresses_email_validator_refuses_stay_refused(value: str) -> None:
    _clean_email("warm@example.cl")
    _clean_email(f"x@{_LONG_IDN}")  # valid behind a local part of one character
    with pytest.raises(InvalidOrder, match="valid e-mail"):
        _clean_email(value)
