"""Reads of the key pool. Stock is always counted from the pool itself, so it cannot drift."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Count
from django.utils import timezone

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


_NTH_SELLABLE_SQL = """
    SELECT id FROM {table}
     WHERE product_id = %s AND status = %s AND (expires_at IS NULL OR expires_at > %s)
     ORDER BY expires_at ASC NULLS LAST, id ASC
     LIMIT 1 OFFSET %s
"""


def product_has_stock(*, product_id: int, quantity: int) -> bool:
    """True when at least ``quantity`` keys can be sold now.

    Walks the partial index in reservation order and reads at most ``quantity`` entries, however
    large the pool or however many keys were sold before. Runs after every delivery (the
    low-stock check), hence hand-written.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _NTH_SELLABLE_SQL.format(table=CardKey._meta.db_table),
            [product_id, CardKeyStatus.AVAILABLE, now, quantity - 1],
        )
        return cursor.fetchone() is not None


def order_keys(*, order) -> list[tuple[str, datetime | None]]:
    """(plaintext, expires_at) of the keys sold to an order. Only for the buyer's page and messages."""
    keys = CardKey.objects.filter(order=order, status=CardKeyStatus.SOLD).order_by("id")
    return [
        (secret_decrypt(ciphertext=k.ciphertext, key_version=k.key_version, product_id=k.product_id), k.expires_at)
        for k in keys
    ]
