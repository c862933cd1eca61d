"""The original system's catalogue, and random orders drawn from it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pedidos.domain.order import CardBrand, OrderDetails, PaymentGateway

PRODUCTS = (
    "Silla Gamer",
    "Laptop HP",
    "Smartphone Samsung",
    "Audífonos Bluetooth",
    "Reloj Inteligente",
)
PAYMENT_GATEWAYS = tuple(PaymentGateway)
CARD_BRANDS = tuple(CardBrand)
BANKS = ("Banco de Chile", "Banco Santander", "Banco Estado", "BCI", "Scotiabank")
SHIPPING_REGIONS = (
    "Región Metropolitana",
    "Región de Valparaíso",
    "Región del Biobío",
    "Región de La Araucanía",
    "Región de Los Lagos",
    "Región de Antofagasta",
    "Región de Coquimbo",
    "Región de O'Higgins",
    "Región del Maule",
    "Región de Aysén",
    "Región de Magallanes",
)
SHIPPING_ADDRESSES = (
    "Av. Libertador Bernardo O'Higgins 1000, Santiago",
    "Calle San Martín 150, Valparaíso",
    "Calle Balmaceda 200, Concepción",
    "Calle Pajaritos 300, Maipú",
    "Calle Larga 450, Temuco",
)
# Prices in CLP, like the original's randint(10, 100000).
CATALOGUE_CURRENCY = "CLP"
MIN_PRICE_CLP = 990
MAX_PRICE_CLP = 1_500_000


@dataclass(frozen=True, slots=True)
class RandomOrder:
    product_name: str
    price_clp: int
    payment_gateway: PaymentGateway
    card_brand: CardBrand | None
    bank: str
    shipping_region: str
    shipping_address: str

    def details(self, customer_email: str) -> OrderDetails:
        """This order for `customer_email`, through the domain's rules (raises InvalidOrder)."""
        return OrderDetails.create(
            product_name=self.product_name,
            price_minor=self.price_clp,
            currency=CATALOGUE_CURRENCY,
            payment_gateway=self.payment_gateway,
            card_brand=self.card_brand,
            bank=self.bank,
            shipping_region=self.shipping_region,
            shipping_address=self.shipping_address,
            customer_email=customer_email,
        )


def random_order(rng: random.Random) -> RandomOrder:
    gateway = rng.choice(PAYMENT_GATEWAYS)
    brand = None if gateway is PaymentGateway.BANK_TRANSFER else rng.choice(CARD_BRANDS)
    # Round to tens of pesos, as shops price.
    price = rng.randint(MIN_PRICE_CLP // 10, MAX_PRICE_CLP // 10) * 10
    return RandomOrder(
        product_name=rng.choice(PRODUCTS),
        price_clp=price,
        payment_gateway=gateway,
        card_brand=brand,
        bank=rng.choice(BANKS),
        shipping_region=rng.choice(SHIPPING_REGIONS),
        shipping_address=rng.choice(SHIPPING_ADDRESSES),
    )
