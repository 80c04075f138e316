from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class DeliveredKey:
    secret: str
    expires_at: datetime | None


@dataclass(frozen=True)
class ShopBrand:
    """Who the message is from: the shop's name ("" for the default), its logo as an absolute
    URL ("" for none) and its support contacts as (label, value) pairs."""

    name: str = ""
    logo_url: str = ""
    support: tuple[tuple[StrOrPromise, str], ...] = ()


@dataclass(frozen=True)
class DeliveryContent:
    """What a message carries. The secrets are plaintext: never log this object.

    ``notice`` empty: the message with the keys (``delayed`` when the order waited in the
    exception queue first). Otherwise a notice (``exception.<reason>`` with ``reason``, or
    ``refunded``) whose ``keys`` are always empty. ``language``: the buyer's, "" for the shop's."""

    order_number: str
    product_name: str
    quantity: int
    keys: tuple[DeliveredKey, ...]
    usage_instructions: str
    order_url: str
    short_url: str
    email_subject: str = ""
    email_text: str = ""
    email_html: str = ""
    notice: str = ""
    reason: str = ""
    delayed: bool = False
    total: Decimal | None = None
    language: str = ""
    brand: ShopBrand = field(default_factory=ShopBrand)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key.secret for key in self.keys)


class ChannelError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Channel:
    identifier: str = ""

    def send(self, *, recipient: str, content: DeliveryContent) -> str:
        """Send the keys; return the provider's message id. Raises ChannelError."""
        raise NotImplementedError
