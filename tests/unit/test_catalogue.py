import random

from pedidos.domain.catalogue import PRODUCTS, SHIPPING_REGIONS, random_order
from pedidos.domain.order import OrderDetails, PaymentGateway


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
        OrderDetails.create(
            product_name=drawn.product_name,
            price_minor=drawn.price_clp,
            currency="CLP",
            payment_gateway=drawn.payment_gateway,
            card_brand=drawn.card_brand,
            bank=drawn.bank,
            shipping_region=drawn.shipping_region,
            shipping_address=drawn.shipping_address,
            customer_email="x@example.cl",
        )
    assert seen_transfer


def test_a_seed_reproduces_the_same_orders() -> None:
    assert random_order(random.Random(1)) == random_order(random.Random(1))
