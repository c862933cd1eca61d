"""Exact money in integer minor units; CLP by default."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision

DEFAULT_CURRENCY = "CLP"
SUPPORTED_CURRENCIES = frozenset({"CLP", "USD", "EUR"})
# A single order above 100 million major units is a typo or an attack, not a sale.
MAX_MAJOR_UNITS = 100_000_000
# Looked up once: Babel's lookup costs more than the rest of the validation.
_EXPONENTS = {code: int(get_currency_precision(code)) for code in SUPPORTED_CURRENCIES}


class InvalidMoney(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str = DEFAULT_CURRENCY

    def __post_init__(self) -> None:
        if self.currency not in SUPPORTED_CURRENCIES:
            supported = ", ".join(sorted(SUPPORTED_CURRENCIES))
            raise InvalidMoney(f"unsupported currency {self.currency!r} (supported: {supported})")
        if type(self.amount_minor) is not int:
            raise InvalidMoney("amount must be an integer number of minor units")
        if self.amount_minor <= 0:
            raise InvalidMoney("amount must be greater than zero")
        if self.amount_minor > MAX_MAJOR_UNITS * 10**self.exponent:
            raise InvalidMoney(f"amount exceeds {MAX_MAJOR_UNITS:,} {self.currency}")

    @property
    def exponent(self) -> int:
        return _EXPONENTS[self.currency]

    @property
    def major(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-self.exponent)

    def format(self, locale: str = "es_CL") -> str:
        """Localised for customers, e.g. CLP 12990 → '$12.990'."""
        return str(format_currency(self.major, self.currency, locale=locale))
