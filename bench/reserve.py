#!/usr/bin/env python
"""Reservation throughput on PostgreSQL: the project's delivery service vs the same SQL, raw.

Both sides deliver paid orders of quantity 1 from one product's pool with N parallel
processes: lock the order, take a key with FOR UPDATE SKIP LOCKED, mark it sold, mark the order
delivered, write the order event, commit. The raw side sends those statements through psycopg2
directly. Prints orders/s for each and their ratio (target: >= 0.5).

    .venv/bin/python bench/reserve.py [--orders 3000] [--workers 4] [--rounds 3]

Uses (and recreates) the database named by --database on the local PostgreSQL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402

# The statements order_deliver() sends for a quantity-1 order to a mobile contact, in order
# (BEGIN and COMMIT come from psycopg2 on both sides).
RAW_SQL = [
    # shop.lock_objects.order_lock
    """SELECT o.*, p.low_stock_threshold AS low_stock_threshold, p.delivery_delay_minutes AS delivery_delay_minutes
         FROM shop_order o JOIN shop_product p ON p.id = o.product_id WHERE o.id = %(order)s FOR UPDATE OF o""",
    # cardpool.services.cardkeys_sell_to_order
    """UPDATE cardpool_cardkey SET status = 'sold', order_id = %(order)s, sold_at = now()
        WHERE id IN (SELECT id FROM cardpool_cardkey
                      WHERE product_id = %(product)s AND status = 'available' AND (expires_at IS NULL OR expires_at > now())
                      ORDER BY expires_at ASC NULLS LAST, id ASC LIMIT 1 FOR UPDATE SKIP LOCKED)""",
    # shop.services.order_transition
    """UPDATE shop_order SET status = 'delivered', updated_at = now(), delivered_at = now(), exception_reason = ''
        WHERE id = %(order)s""",
    """INSERT INTO shop_orderevent (order_id, type, message, actor, created_at)
        VALUES (%(order)s, 'shop.order.delivered', '1 key(s)', 'system', now())""",
    # delivery.services._order_messages_send (the SMS row; the task sends it after commit)
    """INSERT INTO delivery_deliverymessage (order_id, channel, recipient, notice, state, tries, last_error, created_at, updated_at)
        VALUES (%(order)s, 'sms', '13800138000', '', 'pending', 0, '', now(), now())
        ON CONFLICT (order_id, channel, notice) DO NOTHING RETURNING id""",
    # cardpool.selectors.product_has_stock (the low-stock check, threshold 0)
    """SELECT id FROM cardpool_cardkey
        WHERE product_id = %(product)s AND status = 'available' AND (expires_at IS NULL OR expires_at > now())
        ORDER BY expires_at ASC NULLS LAST, id ASC LIMIT 1 OFFSET 0""",
]


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kameng.settings")
    os.environ["CONN_MAX_AGE"] = "600"
    import django

    django.setup()


def _prepare(orders: int, label: str) -> tuple[int, list[int]]:
    """A product with ``orders`` keys and as many paid orders for it; returns their ids."""
    import secrets
    from datetime import timedelta
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from cardpool.importing import cardkeys_import_text
    from shop.models import Category, Order, OrderStatus, Product

    category, _ = Category.objects.get_or_create(slug="bench", defaults={"name": "bench"})
    product = Product.objects.create(
        category=category, slug=f"bench-{label}", name=f"bench {label}", price=Decimal("1.00"), low_stock_threshold=0
    )
    cardkeys_import_text(product=product, text="\n".join(f"{label}-{i}-{secrets.token_hex(6)}" for i in range(orders)))
    now = timezone.now()
    Order.objects.bulk_create(
        [
            Order(
                number=f"{label[:1]}{label[-1]}{i:018d}",
                access_token_hash=secrets.token_hex(32),
                product=product,
                quantity=1,
                unit_price=Decimal("1.00"),
                total=Decimal("1.00"),
                contact="13800138000",
                contact_kind="mobile",
                query_password_hash="-",
                status=OrderStatus.PAID,
                paid_at=now,
                expires_at=now + timedelta(minutes=15),
            )
            for i in range(orders)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE cardpool_cardkey") if connection.get_autocommit() else None
        cursor.execute("VACUUM ANALYZE shop_order") if connection.get_autocommit() else None
    ids = list(Order.objects.filter(product=product).order_by("id").values_list("id", flat=True))
    return product.pk, ids


def _project_worker(args) -> int:
    database_url, order_ids = args
    _setup_django(database_url)
    from delivery.services import order_deliver

    done = 0
    for order_id in order_ids:
        if order_deliver(order_id=order_id).status == "delivered":
            done += 1
    return done


def _raw_worker(args) -> int:
    import psycopg2

    dsn, product_id, order_ids = args
    conn = psycopg2.connect(dsn)
    done = 0
    with conn.cursor() as cursor:
        for order_id in order_ids:
            params = {"order": order_id, "product": product_id}
            for statement in RAW_SQL:
                cursor.execute(statement, params)
                if statement is RAW_SQL[1] and cursor.rowcount != 1:
                    raise RuntimeError("raw side ran out of keys")
            conn.commit()
            done += 1
    conn.close()
    return done


def _run(pool, fn, chunks) -> tuple[int, float]:
    started = time.perf_counter()
    done = sum(pool.map(fn, chunks))
    return done, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench")
    options = parser.parse_args()
    database_url = f"{options.server}/{options.database}"

    database_recreate(options.server, options.database)
    _setup_django(database_url)
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)

    def chunks(ids):
        return [ids[i :: options.workers] for i in range(options.workers)]

    context = multiprocessing.get_context("fork")
    print(f"orders per side and round: {options.orders}, parallel workers: {options.workers}, "
          f"PostgreSQL at {options.server}")
    ratios = []
    complete = True
    for round_number in range(1, options.rounds + 1):
        project_product, project_orders = _prepare(options.orders, f"project{round_number}")
        raw_product, raw_orders = _prepare(options.orders, f"raw{round_number}")
        connections.close_all()
        # Alternate which side goes first, so neither always gets the warmer cache.
        sides = [("raw", _raw_worker, [(database_url, raw_product, c) for c in chunks(raw_orders)]),
                 ("project", _project_worker, [(database_url, c) for c in chunks(project_orders)])]
        if round_number % 2 == 0:
            sides.reverse()
        rates = {}
        for name, worker, work in sides:
            with context.Pool(options.workers) as pool:
                done, seconds = _run(pool, worker, work)
            complete &= done == options.orders
            rates[name] = done / seconds
        ratios.append(rates["project"] / rates["raw"])
        print(f"round {round_number}: raw SQL {rates['raw']:7.1f} orders/s | kameng order_deliver() "
              f"{rates['project']:7.1f} orders/s | ratio {ratios[-1]:.2f}")
    print(f"median ratio (kameng / raw): {statistics.median(ratios):.2f}   (target >= 0.5)")
    if not complete:
        print("error: not every order was delivered", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
