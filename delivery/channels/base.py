from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DeliveredKey:
    secret: str
    expires_at: datetime | None


@dataclass(frozen=True)
class DeliveryContent:
    """What a message carries. The secrets are plaintext: never log this object."""

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
