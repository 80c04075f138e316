"""What shop asks of whoever holds a product's goods, without importing it.

Orders and the catalog live in shop; the goods do not (card keys live in cardpool, which
depends on shop's products and orders). So shop asks through this port, and the app holding
the goods provides it in its ``AppConfig.ready`` (``cardpool.fulfilment``). Products fulfilled
another way (a person, an upstream) will provide their own.
"""

from __future__ import annotations

from typing import Protocol

# Stock shown for a product whose pool holds a reusable key without a cap on uses.
UNLIMITED_STOCK = 10**9


class Fulfilment(Protocol):
    def units_available(self, *, product_id: int, quantity: int) -> bool:
        """True when at least ``quantity`` units can be sold now (checkout and payment ask)."""

    def units_shown(self, *, product_ids: list[int], up_to: int) -> dict[int, int]:
        """Sellable units per product, counted up to ``up_to`` (what pages show)."""

    def units_counted(self, *, product_ids: list[int]) -> dict[int, int]:
        """Exact sellable units per product, UNLIMITED_STOCK when uncapped (for staff)."""

    def order_holds_goods(self, *, order_id: int) -> bool:
        """Whether the order holds everything it was sold (its keys, say)."""


_provided: list[Fulfilment] = []


def fulfilment_provide(provider: Fulfilment) -> None:
    """Install the provider (once, from an AppConfig.ready)."""
    _provided[:] = [provider]


def fulfilment() -> Fulfilment:
    if not _provided:
        raise RuntimeError("no fulfilment provider installed: is cardpool in INSTALLED_APPS?")
    return _provided[0]
