"""Reads of the key pool. Stock is always counted from the pool itself, so it cannot drift."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from cardpool.crypto import secret_decrypt
from cardpool.models import CardKey, CardKeyStatus
from kameng.sql import sql_execute

# Stock shown for a product whose pool holds a reusable key without a cap on uses.
UNLIMITED_STOCK = 10**9


def available_counts(*, product_ids: list[int]) -> dict[int, int]:
    """Sellable units per product: unsold unique keys plus the uses left on reusable keys
    (UNLIMITED_STOCK when one has no cap). Served by the partial index over available keys."""
    if not product_ids:
        return {}
    rows = (
        CardKey.objects.filter(product_id__in=product_ids, status=CardKeyStatus.AVAILABLE)
        .values("product_id")
        .annotate(
            unique=Count("id", filter=Q(max_uses=1)),
            shared=Sum(F("max_uses") - F("uses"), filter=Q(max_uses__gt=1)),
            uncapped=Count("id", filter=Q(max_uses__isnull=True)),
        )
        .order_by()
    )
    return {
        row["product_id"]: UNLIMITED_STOCK if row["uncapped"] else min(row["unique"] + (row["shared"] or 0), UNLIMITED_STOCK)
        for row in rows
    }


SELLABLE_UNITS_SQL = """
    SELECT COALESCE(SUM(CASE WHEN max_uses IS NULL THEN %s ELSE max_uses - uses END), 0)
      FROM (SELECT max_uses, uses FROM {table}
             WHERE product_id = %s AND status = %s AND (expires_at IS NULL OR expires_at > %s)
             ORDER BY expires_at ASC NULLS LAST, id ASC
             LIMIT %s) first_keys
"""


def product_has_stock(*, product_id: int, quantity: int) -> bool:
    """True when at least ``quantity`` units can be sold now.

    Walks the partial index in reservation order and reads at most ``quantity`` entries (each
    sellable key holds at least one unit), however large the pool or however many keys were sold
    before. Runs after every delivery (the low-stock check), hence hand-written.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        sql_execute(
            cursor,
            SELLABLE_UNITS_SQL.format(table=CardKey._meta.db_table),
            [quantity, product_id, CardKeyStatus.AVAILABLE, now, quantity],
        )
        return cursor.fetchone()[0] >= quantity


_ORDER_KEYS_SQL = "SELECT ciphertext, key_version, product_id, expires_at FROM {table} WHERE order_id = %s AND status = %s ORDER BY id"


def order_keys(*, order) -> list[tuple[str, datetime | None]]:
    """(plaintext, expires_at) of the keys sold to an order. Only for the buyer's page and messages.
    Hand-written: every delivery message and order page reads it."""
    with connection.cursor() as cursor:
        sql_execute(cursor, _ORDER_KEYS_SQL.format(table=CardKey._meta.db_table), [order.pk, CardKeyStatus.SOLD])
        rows = cursor.fetchall()
    convert = connection.ops.convert_datetimefield_value if connection.vendor == "sqlite" else None
    return [
        (
            secret_decrypt(ciphertext=bytes(ciphertext), key_version=key_version, product_id=product_id),
            convert(expires_at, None, connection) if convert and expires_at is not None else expires_at,
        )
        for ciphertext, key_version, product_id, expires_at in rows
    ]
