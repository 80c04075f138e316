from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryContent:
    """What a message carries. ``secrets`` are plaintext: never log this object."""

    order_number: str
    product_name: str
    quantity: int
    secrets: tuple[str, ...]
    usage_instructions: str
    order_url: str
    short_url: str


class ChannelError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Channel:
    identifier: str = ""

    def send(self, *, recipient: str, content: DeliveryContent) -> str:
        """Send the keys; return the provider's message id. Raises ChannelError."""
        raise NotImplementedError
