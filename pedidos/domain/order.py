"""The order: validated details, identity and the record of the states it reached."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from pedidos.domain.money import InvalidMoney, Money
from pedidos.domain.states import FIRST_STATE, IllegalTransition, OrderState

MAX_TEXT_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 128
# Fixed namespace so that an idempotency key maps to the same order id on every replica.
_ORDER_ID_NAMESPACE = uuid.UUID("6f1c7b1e-3c1a-4f7e-9a55-0d6a3c2b9e41")


class PaymentGateway(StrEnum):
    MERCADO_PAGO = "MERCADO_PAGO"
    PAYPAL = "PAYPAL"
    STRIPE = "STRIPE"
    BANK_TRANSFER = "BANK_TRANSFER"


class CardBrand(StrEnum):
    VISA = "VISA"
    MASTERCARD = "MASTERCARD"
    AMERICAN_EXPRESS = "AMERICAN_EXPRESS"
    DISCOVER = "DISCOVER"


class InvalidOrder(ValueError):
    """A field of an order breaks a rule; `field` names it for the caller."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _clean_text(field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidOrder(field_name, "must be a string")
    text = value.strip()
    if not text:
        raise InvalidOrder(field_name, "must not be empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidOrder(field_name, f"must be at most {MAX_TEXT_LENGTH} characters")
    if not text.isprintable():
        raise InvalidOrder(field_name, "must not contain control characters")
    return text


def _clean_email(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidOrder("customer_email", "must not be empty")
    # The space is the only printable whitespace character.
    if len(value) > 254 or not value.isprintable() or " " in value:
        raise InvalidOrder("customer_email", "is not a valid e-mail address")
    try:
        # ASCII only: most SMTP servers do not speak SMTPUTF8; IDN domains become punycode.
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidOrder("customer_email", f"is not a valid e-mail address ({exc})") from None
    return str(checked.ascii_email or checked.normalized)


def validate_idempotency_key(key: str) -> str:
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidOrder(
            "idempotency_key",
            f"must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
        )
    return key


@dataclass(frozen=True, slots=True)
class OrderDetails:
    """What the customer ordered; construction validates every field."""

    product_name: str
    price: Money
    payment_gateway: PaymentGateway
    card_brand: CardBrand | None
    bank: str
    shipping_region: str
    shipping_address: str
    customer_email: str

    @classmethod
    def create(
        cls,
        *,
        product_name: object,
        price_minor: object,
        currency: object,
        payment_gateway: object,
        card_brand: object,
        bank: object,
        shipping_region: object,
        shipping_address: object,
        customer_email: object,
    ) -> OrderDetails:
        try:
            gateway = PaymentGateway(str(payment_gateway))
        except ValueError:
            raise InvalidOrder("payment_gateway", "must be a known payment gateway") from None
        brand: CardBrand | None
        if card_brand in (None, ""):
            if gateway is not PaymentGateway.BANK_TRANSFER:
                raise InvalidOrder("card_brand", "is required for card payments")
            brand = None
        else:
            try:
                brand = CardBrand(str(card_brand))
            except ValueError:
                raise InvalidOrder("card_brand", "must be a known card brand") from None
        if not isinstance(currency, str):
            raise InvalidOrder("price.currency_code", "must be a string")
        if type(price_minor) is not int:
            raise InvalidOrder("price.amount_minor", "must be an integer")
        try:
            price = Money(price_minor, currency or "CLP")
        except InvalidMoney as exc:
            name = "price.currency_code" if "currency" in str(exc) else "price.amount_minor"
            raise InvalidOrder(name, str(exc)) from None
        return cls(
            product_name=_clean_text("product_name", product_name),
            price=price,
            payment_gateway=gateway,
            card_brand=brand,
            bank=_clean_text("bank", bank),
            shipping_region=_clean_text("shipping_region", shipping_region),
            shipping_address=_clean_text("shipping_address", shipping_address),
            customer_email=_clean_email(customer_email),
        )


def new_order_id(customer_email: str, idempotency_key: str | None) -> str:
    """A random id, or one derived from (customer, key) so retries land on the same order."""
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_ORDER_ID_NAMESPACE, f"{customer_email}\x00{idempotency_key}"))


def validate_order_id(order_id: str) -> str:
    try:
        return str(uuid.UUID(order_id))
    except (ValueError, AttributeError, TypeError):
        raise InvalidOrder("order_id", "must be a UUID") from None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Order:
    """An accepted order and the timestamps of every state it has reached."""

    order_id: str
    details: OrderDetails
    accepted_at: datetime
    reached: dict[OrderState, datetime] = field(default_factory=dict)

    @property
    def state(self) -> OrderState | None:
        return max(self.reached, key=lambda s: s.position) if self.reached else None

    def next_state(self) -> OrderState | None:
        current = self.state
        if current is None:
            return FIRST_STATE
        return None if current.is_final else current.next()

    def enter(self, target: OrderState, at: datetime) -> None:
        """Record reaching `target`; only the single next step is legal."""
        current = self.state
        if current is None:
            if target is not FIRST_STATE:
                raise IllegalTransition(
                    f"an order starts at {FIRST_STATE.value}, not {target.value}"
                )
        else:
            current.check_transition(target)
        self.reached[target] = at
