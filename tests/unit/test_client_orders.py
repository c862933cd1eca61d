"""Request building: exact money, enums mapped by name, bank transfers without a card brand."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from client.orders import (
    DEFAULT_CUSTOMER_EMAIL,
    InvalidEmail,
    check_email,
    random_requests,
    to_order_details,
    to_request,
)
from pedidos.domain.catalogue import RandomOrder, random_order
from pedidos.domain.order import CardBrand, InvalidOrder, PaymentGateway
from pedidos.v1 import orders_pb2

EMAIL = "ana@ejemplo.cl"


def _catalogue_order(
    gateway: PaymentGateway, brand: CardBrand | None, price: int = 12_990
) -> RandomOrder:
    return replace(
        random_order(random.Random(1)), payment_gateway=gateway, card_brand=brand, price_clp=price
    )


def test_price_is_sent_exactly_in_minor_units_of_clp() -> None:
    order = _catalogue_order(PaymentGateway.STRIPE, CardBrand.VISA, price=1_499_990)
    request = to_request(to_order_details(order, EMAIL), "key-1")
    assert request.order.price.currency_code == "CLP"
    assert request.order.price.amount_minor == 1_499_990
    assert request.idempotency_key == "key-1"


def test_every_catalogue_field_reaches_the_request() -> None:
    order = _catalogue_order(PaymentGateway.PAYPAL, CardBrand.DISCOVER)
    sent = to_request(to_order_details(order, EMAIL), "k").order
    assert (
        sent.product_name,
        sent.bank,
        sent.shipping_region,
        sent.shipping_address,
        sent.customer_email,
    ) == (order.product_name, order.bank, order.shipping_region, order.shipping_address, EMAIL)


@pytest.mark.parametrize(
    "gateway", [g for g in PaymentGateway if g is not PaymentGateway.BANK_TRANSFER]
)
@pytest.mark.parametrize("brand", list(CardBrand))
def test_card_payments_map_gateway_and_brand_by_name(
    gateway: PaymentGateway, brand: CardBrand
) -> None:
    sent = to_request(to_order_details(_catalogue_order(gateway, brand), EMAIL), "k").order
    assert (
        orders_pb2.PaymentGateway.Name(sent.payment_gateway) == f"PAYMENT_GATEWAY_{gateway.value}"
    )
    assert orders_pb2.CardBrand.Name(sent.card_brand) == f"CARD_BRAND_{brand.value}"
    assert sent.card_brand != orders_pb2.CARD_BRAND_UNSPECIFIED


def test_bank_transfer_is_sent_without_card_brand() -> None:
    order = _catalogue_order(PaymentGateway.BANK_TRANSFER, None)
    sent = to_request(to_order_details(order, EMAIL), "k").order
    assert sent.payment_gateway == orders_pb2.PAYMENT_GATEWAY_BANK_TRANSFER
    assert sent.card_brand == orders_pb2.CARD_BRAND_UNSPECIFIED


def test_card_payment_without_brand_is_refused_before_sending() -> None:
    with pytest.raises(InvalidOrder) as refused:
        to_order_details(_catalogue_order(PaymentGateway.STRIPE, None), EMAIL)
    assert refused.value.field == "card_brand"


def test_same_seed_gives_same_orders_but_fresh_idempotency_keys() -> None:
    first = list(random_requests(30, EMAIL, random.Random(42)))
    second = list(random_requests(30, EMAIL, random.Random(42)))
    assert [r.order for r in first] == [r.order for r in second]
    keys = [r.idempotency_key for r in first + second]
    assert len(set(keys)) == len(keys)


def test_different_seeds_give_different_orders() -> None:
    first = list(random_requests(30, EMAIL, random.Random(1)))
    second = list(random_requests(30, EMAIL, random.Random(2)))
    assert [r.order for r in first] != [r.order for r in second]


def test_random_batches_use_the_whole_catalogue_consistently() -> None:
    requests = list(random_requests(300, EMAIL, random.Random(3)))
    assert len(requests) == 300
    gateways = {r.order.payment_gateway for r in requests}
    assert gateways == {
        orders_pb2.PaymentGateway.Value(f"PAYMENT_GATEWAY_{g.value}") for g in PaymentGateway
    }
    for request in requests:
        is_transfer = request.order.payment_gateway == orders_pb2.PAYMENT_GATEWAY_BANK_TRANSFER
        assert (request.order.card_brand == orders_pb2.CARD_BRAND_UNSPECIFIED) == is_transfer
        assert request.order.price.amount_minor > 0
        assert request.order.customer_email == EMAIL


def test_injected_key_factory_is_used_once_per_order() -> None:
    keys = iter(["a", "b", "c"])
    requests = list(random_requests(3, EMAIL, random.Random(0), new_key=lambda: next(keys)))
    assert [r.idempotency_key for r in requests] == ["a", "b", "c"]


def test_check_email_normalises_like_the_domain() -> None:
    assert check_email("  Ana@EJEMPLO.cl ") == "Ana@ejemplo.cl"
    assert check_email(DEFAULT_CUSTOMER_EMAIL) == DEFAULT_CUSTOMER_EMAIL


@pytest.mark.parametrize("address", ["", "sin-arroba", "a@", "dos@@ejemplo.cl", "a b@ejemplo.cl"])
def test_check_email_rejects_bad_addresses_in_spanish(address: str) -> None:
    with pytest.raises(InvalidEmail, match="no es válido"):
        check_email(address)
