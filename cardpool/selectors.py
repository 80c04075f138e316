"""Reads of the key pool. Stock is always counted from the pool itself, so it cannot drift."""

from __future__ import annotations

from django.db.models import Count

from cardpool.crypto import secret_decrypt
from cardpool.models import CardKey, CardKeyStatus


def available_counts(*, product_ids: list[int]) -> dict[int, int]:
    """Available keys per product (served by the partial index over available keys)."""
    if not product_ids:
        return {}
    rows = (
        CardKey.objects.filter(product_id__in=product_ids, status=CardKeyStatus.AVAILABLE)
        .values("product_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["product_id"]: row["n"] for row in rows}


def product_has_stock(*, product_id: int, quantity: int) -> bool:
    """True when at least ``quantity`` keys are available; reads at most ``quantity`` index entries."""
    return (
        CardKey.objects.filter(product_id=product_id, status=CardKeyStatus.AVAILABLE)
        .order_by("id")[quantity - 1 : quantity]
        .exists()
    )


def order_secrets(*, order) -> list[str]:
    """The plaintext keys sold to an order, in order. Only for the buyer's page and the email."""
    keys = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD).order_by("id")
    return [secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id) for k in keys]
