"""Reads of the key pool. Stock is always counted from the pool itself, so it cannot drift."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from cardpool.crypto import secret_decrypt
from cardpool.models import CardKey, CardKeyStatus
from kameng.sql import sql_execute, sql_in, sql_literal, values_from_sql
from shop.fulfilment import UNLIMITED_STOCK
from shop.models import Product

_AVAILABLE = sql_literal(CardKeyStatus.AVAILABLE)


# What a sellable key is, defined once (STYLE rule 23: the catalog once counted expired keys as
# stock): available and not expired; a key holds ``max_uses - uses`` units (``unlimited`` when
# it has no cap). Every count of stock and the stock probes below are built from these two.
# The sale (cardpool/services.py) takes keys under the same condition.
def sellable_keys_where(*, product: str, now: str) -> str:
    """``product``: the condition on product_id (``= %s``, ``= p.id``, ``= ANY(…)``). The status
    is a literal, not a parameter: a prepared statement's generic plan can then still use the
    partial index over available keys, which it cannot prove matches ``status = $n``."""
    return f"product_id {product} AND status = {_AVAILABLE} AND (expires_at IS NULL OR expires_at > {now})"


def _sellable_units(*, unlimited: str) -> str:
    return f"CASE WHEN max_uses IS NULL THEN {unlimited} ELSE max_uses - uses END"


def sellable_units_sql(*, product: str, unlimited: str, now: str, limit: str, excluding: str = "") -> str:
    """Units held by a product's first ``limit`` sellable keys in reservation order: served by
    the partial index over available keys, reading at most ``limit`` entries however large the
    pool. Each sellable key holds at least one unit, so a sum >= limit means "at least limit".
    ``excluding``: the name of a batch's statement whose returned ids do not count (the keys a
    sale in the same batch just took). ``{table}`` is left to fill in."""
    left_out = f" AND id NOT IN (SELECT id FROM {excluding})" if excluding else ""
    return f"""
    SELECT COALESCE(SUM({_sellable_units(unlimited=unlimited)}), 0)
      FROM (SELECT max_uses, uses FROM {{table}}
             WHERE {sellable_keys_where(product=product, now=now)}{left_out}
             ORDER BY expires_at ASC NULLS LAST, id ASC
             LIMIT {limit}) first_keys
"""


# Parameters, in order: units of an uncapped key, product id, now, limit.
SELLABLE_UNITS_SQL = sellable_units_sql(product="= %s", unlimited="%s", now="%s", limit="%s")


def stock_counts_sql(*, ids: str, up_to: int) -> str:
    """The statement of ``stock_counts`` (pure): ``ids`` is the condition on the products' ids
    (``kameng.sql.sql_in``), ``now`` the other parameter. ``up_to`` is written into the text: a
    generic plan then knows how few rows each LIMIT reads."""
    up_to = int(up_to)
    table = CardKey._meta.db_table
    where = sellable_keys_where(product="= p.id", now="%(now)s")
    # Both subqueries are LIMITed: the second runs only for fewer than up_to keys anyway, and
    # the limit keeps the estimated cost low, so PostgreSQL's JIT, whose compile time would
    # dwarf this query's run time, does not start (docs/performance.md).
    return f"""
    SELECT p.id,
           (SELECT CASE WHEN count(*) < {up_to}
                        THEN (SELECT COALESCE(SUM({_sellable_units(unlimited=str(up_to))}), 0)
                                FROM (SELECT max_uses, uses FROM {table} WHERE {where} LIMIT {up_to}) few_keys)
                        ELSE {up_to} END
              FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {up_to}) first_keys)
      FROM {Product._meta.db_table} p WHERE p.id {ids}
    """


def stock_counts(*, product_ids: list[int], up_to: int) -> dict[int, int]:
    """Sellable units per product, counted only up to ``up_to``: exact below it, ``up_to``
    meaning "at least that many". For what a page shows (the catalog, a product page); what a
    buyer can order is decided by ``product_has_stock``, exact for the quantity asked.

    One statement. Per product it counts at most ``up_to`` sellable keys from the partial index
    over available keys, reading only the index (an index-only scan: the condition needs no
    other column), so a pool of millions costs what a pool of hundreds does (bench/storefront.py,
    docs/performance.md). Each key holds at least one unit, so ``up_to`` keys settle it; only a
    product with fewer keys has their units summed, which reads those few rows.
    """
    if not product_ids:
        return {}
    ids, id_params = sql_in("ids", product_ids)
    sql = stock_counts_sql(ids=ids, up_to=up_to)
    params = {"now": connection.ops.adapt_datetimefield_value(timezone.now()), **id_params}
    with connection.cursor() as cursor:
        sql_execute(cursor, sql, params)
        return {product_id: min(int(units), up_to) for product_id, units in cursor.fetchall()}


def available_counts(*, product_ids: list[int]) -> dict[int, int]:
    """Exact sellable units per product (UNLIMITED_STOCK when a key has no cap): for staff (the
    admin's product list, a low-stock alert's figure). It reads every sellable key of the
    products; storefront pages use ``stock_counts``."""
    if not product_ids:
        return {}
    ids, id_params = sql_in("ids", product_ids)
    where = sellable_keys_where(product=ids, now="%(now)s")
    sql = (
        f"SELECT product_id, SUM({_sellable_units(unlimited='%(unlimited)s')}) FROM {CardKey._meta.db_table}"
        f" WHERE {where} GROUP BY product_id"
    )
    params: dict[str, Any] = {
        "unlimited": UNLIMITED_STOCK,
        "now": connection.ops.adapt_datetimefield_value(timezone.now()),
        **id_params,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {product_id: min(int(units), UNLIMITED_STOCK) for product_id, units in cursor.fetchall()}


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
            [quantity, product_id, now, quantity],
        )
        return cursor.fetchone()[0] >= quantity


_ORDER_KEYS_SQL = (
    "SELECT ciphertext, key_version, product_id, expires_at FROM {table}"
    " WHERE order_id = %s AND status = %s ORDER BY id"
)


def order_keys(*, order) -> list[tuple[str, datetime | None]]:
    """(plaintext, expires_at) of the keys sold to an order. Only for the buyer's page and messages.
    Hand-written: every delivery message and order page reads it."""
    rows = values_from_sql(
        CardKey,
        ("ciphertext", "key_version", "product_id", "expires_at"),
        _ORDER_KEYS_SQL.format(table=CardKey._meta.db_table),
        [order.pk, CardKeyStatus.SOLD],
    )
    return [
        (secret_decrypt(ciphertext=bytes(ciphertext), key_version=key_version, product_id=product_id), expires_at)
        for ciphertext, key_version, product_id, expires_at in rows
    ]
