import random

from pedidos.domain.catalogue import PRODUCTS, SHIPPING_REGIONS, random_order
from pedidos.domain.money import Money
from pedidos.domain.order import PaymentGateway


def test_random_orders_come_from_the_catalogue_and_validate() -> None:
    rng = random.Random(7)
    seen_transfer = False
    for _ in range(300):
        drawn = random_order(rng)
        assert drawn.product_name in PRODUCTS
        assert drawn.shipping_region in SHIPPING_REGIONS
        assert drawn.price_clp % 10 == 0
        assert drawn.price_clp > 0
        if drawn.payment_gateway is PaymentGateway.BANK_TRANSFER:
            seen_transfer = True
            assert drawn.card_brand is None
        details = drawn.details("x@example.cl")
        assert details.price == Money(drawn.price_clp, "CLP")
        assert (details.product_name, details.payment_gateway, details.card_brand) == (
            drawn.product_name,
            drawn.payment_gateway,
            drawn.card_brand,
        )
        assert (details.bank, details.shipping_region, details.shipping_address) == (
            drawn.bank,
            drawn.shipping_region,
            drawn.shipping_address,
        )
    assert seen_transfer


def test_a_seed_reproduces_the_same_orders() -> None:
    assert random_order(random.Random(1)) == random_order(random.Random(1))
