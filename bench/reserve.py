#!/usr/bin/env python
"""Reservation throughput on PostgreSQL: the project's delivery service vs the same SQL, raw.

Both sides deliver paid orders of quantity 1 from one product's pool with N parallel
processes: lock the order, take a key with FOR UPDATE SKIP LOCKED, mark it sold, mark the order
delivered, write the order event, commit. The raw side sends those statements through psycopg2
directly. Prints orders/s for each and their ratio (target: >= 0.5).

    .venv/bin/python bench/reserve.py [--orders 3000] [--workers 4] [--rounds 3]
    .venv/bin/python bench/reserve.py --orders-in-db 1000000 --rules on --compare-empty

``--orders-in-db N`` fills the database first with a shop's history of N orders (in SQL:
bench_database.order_history_fill; a few minutes for 1,000,000). ``--rules on`` switches every
delivery rule on (automatic delivery, a review amount above the bench orders' total, a limit of
orders per contact and IP an hour that they stay under), and the raw side sends the hold rule's
counting statement too. ``--compare-empty`` also delivers, in each round, the same orders on a second,
empty database with the same rules, and prints the time per delivery with the history against
the time without it (target: <= 1.5); ``--empty-rules off`` compares with an empty database whose
rules are off, as a new shop's are. Bench orders come from many buyers (three orders each, in
the hour, from their own IP).

Uses (and recreates) the database named by --database (and --database + "_empty") on the local
PostgreSQL.
"""

from __future__ import annotations

import argparse
import ipaddress
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate, order_history_fill  # noqa: E402

# The statements order_deliver() sends for a quantity-1 order to a mobile contact, in order
# (BEGIN and COMMIT come from psycopg2 on both sides).
RAW_SQL = [
    # shop.lock_objects.order_lock
    """SELECT o.*, p.low_stock_threshold AS low_stock_threshold, p.delivery_delay_minutes AS delivery_delay_minutes
         FROM shop_order o JOIN shop_product p ON p.id = o.product_id WHERE o.id = %(order)s FOR UPDATE OF o""",
    # cardpool.services.cardkeys_sell_to_order
    """UPDATE cardpool_cardkey SET status = 'sold', order_id = %(order)s, sold_at = now()
        WHERE id IN (SELECT id FROM cardpool_cardkey
                      WHERE product_id = %(product)s AND status = 'available'
                        AND (expires_at IS NULL OR expires_at > now())
                      ORDER BY expires_at ASC NULLS LAST, id ASC LIMIT 1 FOR UPDATE SKIP LOCKED)""",
    # shop.services.order_transition
    """UPDATE shop_order SET status = 'delivered', updated_at = now(), delivered_at = now(), exception_reason = ''
        WHERE id = %(order)s""",
    """INSERT INTO shop_orderevent (order_id, type, message, actor, created_at, dispatched_at)
        VALUES (%(order)s, 'shop.order.delivered', '1 key(s)', 'system', now(), now())""",
    # delivery.services._order_messages_send (the SMS row; the task sends it after commit)
    """INSERT INTO delivery_deliverymessage
         (order_id, channel, recipient, notice, state, tries, last_error, created_at, updated_at)
        VALUES (%(order)s, 'sms', '13800138000', '', 'pending', 0, '', now(), now())
        ON CONFLICT (order_id, channel, notice) DO NOTHING RETURNING id""",
    # cardpool.selectors.product_has_stock (the low-stock check, threshold 0)
    """SELECT id FROM cardpool_cardkey
        WHERE product_id = %(product)s AND status = 'available' AND (expires_at IS NULL OR expires_at > now())
        ORDER BY expires_at ASC NULLS LAST, id ASC LIMIT 1 OFFSET 0""",
]

# With --rules on, after the order lock: delivery.services.delivery_hold_reason's counts
# (shop.selectors.orders_paid_since_count), each read up to the limit.
HOURLY_LIMIT = 20
RAW_RULES_SQL = [
    f"""SELECT (SELECT count(*) FROM (SELECT 1 FROM shop_order WHERE contact = %(contact)s
                                        AND paid_at >= now() - interval '1 hour' AND id <> %(order)s
                                      LIMIT {HOURLY_LIMIT}) by_contact),
               (SELECT count(*) FROM (SELECT 1 FROM shop_order WHERE client_ip = %(ip)s
                                        AND paid_at >= now() - interval '1 hour' AND id <> %(order)s
                                      LIMIT {HOURLY_LIMIT}) by_client_ip)""",  # noqa: S608 - HOURLY_LIMIT is a constant of ours
]
ORDERS_PER_BUYER = 3


def _raw_statements(rules: bool) -> list[str]:
    return [RAW_SQL[0], *(RAW_RULES_SQL if rules else []), *RAW_SQL[1:]]


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kameng.settings")
    os.environ["CONN_MAX_AGE"] = "600"
    import django

    django.setup()


def _database_use(name: str) -> None:
    """Point this process's Django connection at database ``name`` (the next query connects)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def _rules_set(*, on: bool) -> None:
    from decimal import Decimal

    from delivery.models import DeliveryRules

    rules = {"auto_delivery": True, "review_amount": None, "review_orders_per_hour": None}
    if on:
        rules.update(review_amount=Decimal("1000.00"), review_orders_per_hour=HOURLY_LIMIT)
    DeliveryRules.objects.update_or_create(pk=1, defaults=rules)


def _buyer(slot: int, i: int) -> tuple[str, str]:
    """The contact and IP of bench order ``i`` of a side and round (``slot``): a buyer places
    ORDERS_PER_BUYER orders, all paid in the last hour, from one IP of 198.18.0.0/15."""
    buyer = i // ORDERS_PER_BUYER
    ip = ipaddress.ip_address("198.18.0.0") + (slot * 20_000 + buyer) % 131_072
    return f"13{slot % 100:02d}{buyer:07d}", str(ip)


def _prepare(orders: int, label: str, slot: int) -> tuple[int, list[tuple[int, str, str]]]:
    """A product with ``orders`` keys and as many paid orders for it; returns (id, contact, IP)
    of each."""
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
                contact=_buyer(slot, i)[0],
                contact_kind="mobile",
                client_ip=_buyer(slot, i)[1],
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
    orders = Order.objects.filter(product=product).order_by("id").values_list("id", "contact", "client_ip")
    return product.pk, [(pk, contact, str(ip)) for pk, contact, ip in orders]


def _project_worker(args) -> tuple[int, list[float]]:
    database_url, database, orders = args
    _setup_django(database_url)
    _database_use(database)
    from delivery.services import order_deliver

    done, times = 0, []
    for order_id, _contact, _ip in orders:
        started = time.perf_counter()
        if order_deliver(order_id=order_id).status == "delivered":
            done += 1
        times.append(time.perf_counter() - started)
    return done, times


def _raw_worker(args) -> tuple[int, list[float]]:
    import psycopg2

    dsn, product_id, orders, rules = args
    statements = _raw_statements(rules)
    conn = psycopg2.connect(dsn)
    done, times = 0, []
    with conn.cursor() as cursor:
        for order_id, contact, ip in orders:
            started = time.perf_counter()
            params = {"order": order_id, "product": product_id, "contact": contact, "ip": ip}
            for statement in statements:
                cursor.execute(statement, params)
                if statement is RAW_SQL[1] and cursor.rowcount != 1:
                    raise RuntimeError("raw side ran out of keys")
            conn.commit()
            done += 1
            times.append(time.perf_counter() - started)
    conn.close()
    return done, times


def _run(pool, fn, chunks) -> tuple[int, float, float]:
    """Orders done, seconds, and the median milliseconds of one delivery."""
    started = time.perf_counter()
    results = pool.map(fn, chunks)
    seconds = time.perf_counter() - started
    times = [t for _done, worker_times in results for t in worker_times]
    return sum(done for done, _times in results), seconds, statistics.median(times) * 1000 if times else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders-in-db", type=int, default=0, help="historical orders filled in before measuring")
    parser.add_argument("--rules", choices=["on", "off"], default="off", help="every delivery rule on")
    parser.add_argument("--compare-empty", action="store_true", help="also deliver on an empty database each round")
    parser.add_argument(
        "--empty-rules",
        choices=["same", "off"],
        default="same",
        help="the empty database's rules: as --rules, or off (a new shop's)",
    )
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench")
    options = parser.parse_args()
    database_url = f"{options.server}/{options.database}"
    rules = options.rules == "on"
    empty = f"{options.database}_empty"

    database_recreate(options.server, options.database)
    _setup_django(database_url)
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    _rules_set(on=rules)
    if options.orders_in_db:
        started = time.monotonic()
        order_history_fill(orders=options.orders_in_db)
        print(f"history: {options.orders_in_db} orders filled in {time.monotonic() - started:.0f} s")
    if options.compare_empty:
        database_recreate(options.server, empty)
        _database_use(empty)
        call_command("migrate", verbosity=0)
        _rules_set(on=rules and options.empty_rules == "same")
        _database_use(options.database)

    def chunks(orders):
        return [orders[i :: options.workers] for i in range(options.workers)]

    context = multiprocessing.get_context("fork")
    print(
        f"orders per side and round: {options.orders}, parallel workers: {options.workers}, "
        f"PostgreSQL at {options.server}, orders in the database: {options.orders_in_db}, rules {options.rules}"
    )
    ratios, slowdowns = [], []
    complete = True
    for round_number in range(1, options.rounds + 1):
        _project_product, project_orders = _prepare(options.orders, f"project{round_number}", slot=2 * round_number)
        raw_product, raw_orders = _prepare(options.orders, f"raw{round_number}", slot=2 * round_number + 1)
        sides = [
            ("raw", _raw_worker, [(database_url, raw_product, c, rules) for c in chunks(raw_orders)]),
            ("project", _project_worker, [(database_url, options.database, c) for c in chunks(project_orders)]),
        ]
        if options.compare_empty:
            _database_use(empty)
            _empty_product, empty_orders = _prepare(options.orders, f"project{round_number}", slot=2 * round_number)
            _database_use(options.database)
            sides.append(("empty", _project_worker, [(database_url, empty, c) for c in chunks(empty_orders)]))
        connections.close_all()
        # Rotate which side goes first, so none always gets the warmer cache.
        shift = (round_number - 1) % len(sides)
        sides = sides[shift:] + sides[:shift]
        rates, medians = {}, {}
        for name, worker, work in sides:
            with context.Pool(options.workers) as pool:
                done, seconds, medians[name] = _run(pool, worker, work)
            complete &= done == options.orders
            rates[name] = done / seconds
        ratios.append(rates["project"] / rates["raw"])
        line = (
            f"round {round_number}: raw SQL {rates['raw']:7.1f} orders/s | kameng order_deliver() "
            f"{rates['project']:7.1f} orders/s, median {medians['project']:.2f} ms | ratio {ratios[-1]:.2f}"
        )
        if options.compare_empty:
            slowdowns.append(rates["empty"] / rates["project"])
            line += (
                f" | empty database {rates['empty']:7.1f} orders/s, median {medians['empty']:.2f} ms"
                f" | time here / empty {slowdowns[-1]:.2f}"
            )
        print(line)
    print(f"median ratio (kameng / raw): {statistics.median(ratios):.2f}   (target >= 0.5)")
    if options.compare_empty:
        empty_rules = options.rules if options.empty_rules == "same" else "off"
        print(
            f"median time per delivery with {options.orders_in_db} orders, rules {options.rules} / on an empty "
            f"database, rules {empty_rules}: {statistics.median(slowdowns):.2f}   (target <= 1.5)"
        )
    if not complete:
        print("error: not every order was delivered", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
