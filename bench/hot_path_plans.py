#!/usr/bin/env python
"""EXPLAIN ANALYZE of every statement the hot paths send, on a shop with a long history.

Fills a scratch database with ``--orders`` historical orders (bench_database.order_history_fill:
payments, events, messages and sold keys with them), switches every delivery rule on, then runs
through the public services what a buyer, a delivery and beat's every-minute tasks do: checkout,
payment start, the paid notification, the delivery with its message, a resend, the expiry and
reconciliation queries, the duplicate-payment check, the sweeper, the import resume. Every
statement each one sent is then run again under EXPLAIN (ANALYZE, BUFFERS) in a transaction that
is rolled back, and printed with its time and the scans of its plan; a sequential scan of a
table holding more than --seq-scan-rows rows is flagged "SEQ SCAN". Tasks are not sent (no
broker is needed); platforms are not asked (the sandbox gateway).

    .venv/bin/python bench/hot_path_plans.py [--orders 1000000] [--keep] [--plans]

``--keep`` reuses the database when it already holds a history (migrations are applied to it),
so the same history can be measured before and after a change of indexes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate, order_history_fill  # noqa: E402

SKIPPED_PREFIXES = ("PREPARE", "SAVEPOINT", "RELEASE", "ROLLBACK", "DEALLOCATE", "SET ", "SHOW ")


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kameng.settings")
    import django

    django.setup()


def _history_present() -> bool:
    from shop.models import Order

    return Order.objects.filter(number__startswith="H").exists()


def _statements_captured(run) -> list[tuple[str, object]]:
    """Run ``run()`` and return every statement it sent, with its parameters."""
    from django.db import connection

    sent = []

    def capture(execute, sql, params, many, context):
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture), contextlib.redirect_stdout(io.StringIO()):
        run()
    return [(sql, params) for sql, params in sent if not sql.lstrip().upper().startswith(SKIPPED_PREFIXES)]


def _table_rows() -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        )
        return dict(cursor.fetchall())


def _scans(node: dict, found: list[str]) -> None:
    kind = node.get("Node Type", "")
    if "Scan" in kind and ("Relation Name" in node or "Index Name" in node):
        on = f" on {node['Relation Name']}" if "Relation Name" in node else ""
        index = f" using {node['Index Name']}" if node.get("Index Name") else ""
        rows = f"rows {node['Actual Rows']:.0f} x{node.get('Actual Loops', 1)}, " if "Actual Rows" in node else ""
        found.append(f"{kind}{on}{index} ({rows}removed {node.get('Rows Removed by Filter', 0)})")
    for child in node.get("Plans", []):
        _scans(child, found)


def _explained(sql: str, params) -> tuple[float | None, list[str], str]:
    """(execution ms, scans, text plan) of one statement, run again and rolled back. A write
    that cannot run twice (an INSERT of the same unique row) is only planned: ms is None."""
    from django.db import DatabaseError, connection, transaction

    plan = text = None
    for explain in ("EXPLAIN (ANALYZE, BUFFERS", "EXPLAIN ("):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"{explain}, FORMAT JSON) {sql}".replace("(, ", "("), params)
                    plan = cursor.fetchone()[0]
                    cursor.execute(f"{explain}) {sql}".replace("()", "").replace("(, ", "("), params)
                    text = "\n".join(row[0] for row in cursor.fetchall())
                transaction.set_rollback(True)
            break
        except DatabaseError:
            continue
    plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
    found: list[str] = []
    _scans(plan["Plan"], found)
    return plan.get("Execution Time"), found, text


def _prepared_text(sql: str) -> str:
    """The statement behind ``EXECUTE name (...)`` (kameng.sql prepares the hot ones)."""
    from django.db import connection

    if not sql.startswith("EXECUTE "):
        return sql
    name = sql.split()[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name = %s", [name])
        row = cursor.fetchone()
    return row[0].split(" AS ", 1)[1] if row else sql


def _scenarios():
    """(name, callable) pairs: what the hot paths do, through the public services."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from cardpool.importing import cardkeys_import_text, imports_resume
    from delivery import messages, sweeper
    from delivery import services as delivery
    from delivery.models import DeliveryRules
    from payments import selectors as payment_selectors
    from payments import services as payments
    from payments.gateways.sandbox import SandboxGateway
    from shop import outbox
    from shop import selectors as shop_selectors
    from shop import services as shop
    from shop.models import Category, Order, Product

    DeliveryRules.objects.update_or_create(
        pk=1, defaults={"auto_delivery": True, "review_amount": Decimal("1000.00"), "review_orders_per_hour": 20}
    )
    delivery.delivery_rules_forget()
    category, _ = Category.objects.get_or_create(slug="plans", defaults={"name": "plans"})
    product, created = Product.objects.get_or_create(
        slug="plans",
        defaults={"category": category, "name": "plans", "price": Decimal("9.90"), "low_stock_threshold": 0},
    )
    if created:
        cardkeys_import_text(product=product, text="\n".join(f"PLAN-{n:06d}" for n in range(2000)))
    gateway = SandboxGateway()
    state: dict = {}

    def checkout():
        state["order"] = shop.order_create(
            product=product, quantity=1, contact="13700000001", query_password="plans-1234", client_ip="198.18.0.1"
        )

    def pay_start():
        state["payment"], _action = payments.payment_start(order=state["order"], gateway=gateway)

    def notify():
        form = gateway.notification_fields(out_trade_no=state["payment"].out_trade_no, amount=state["order"].total)
        payments.notification_receive(gateway=gateway, body=b"", headers={}, form=form)

    def deliver():
        # What the outbox listener does with the paid event: its handler delivers the order
        # and sends its message in this process.
        outbox.order_events_dispatch(order_ids=[state["order"].pk])

    def deliver_shared_ip():
        # An order from the carrier-NAT address behind 3 % of all orders: the hold rule counts
        # that address's last hour (and holds it).
        order = shop.order_create(
            product=product, quantity=1, contact="13700000002", query_password="plans-1234", client_ip="100.64.0.1"
        )
        payment, _action = payments.payment_start(order=order, gateway=gateway)
        form = gateway.notification_fields(out_trade_no=payment.out_trade_no, amount=order.total)
        payments.notification_receive(gateway=gateway, body=b"", headers={}, form=form)
        state["shared"] = order

    heavy = (
        Order.objects.filter(
            number__startswith="H", contact="reseller@example.com", status="delivered", messages__state="sent"
        )
        .exclude(events__type="delivery.resend")
        .order_by("-id")
        .first()
    )

    def resend():
        if heavy is not None:
            with contextlib.suppress(messages.ResendRefused):
                messages.delivery_resend(order_id=heavy.pk)

    now = timezone.now()
    return [
        ("checkout: order_create", checkout),
        ("payment_start", pay_start),
        ("notification: notification_receive (paid)", notify),
        ("delivery: order_events_dispatch (the paid event's handler delivers and sends)", deliver),
        ("(an order from the carrier-NAT address, paid)", deliver_shared_ip),
        (
            "delivery: order_events_dispatch of that order (held)",
            lambda: outbox.order_events_dispatch(order_ids=[state["shared"].pk]),
        ),
        ("buyer: delivery_resend (the reseller's latest order)", resend),
        ("beat orders-expire: orders_expire_due", lambda: payments.orders_expire_due(now=now)),
        (
            "beat payments-reconcile: payments_awaiting_notification",
            lambda: payment_selectors.payments_awaiting_notification(now=now),
        ),
        ("beat payments-reconcile: duplicate_payments_queue", payments.duplicate_payments_queue),
        ("beat delivery-sweep: delivery_sweep", sweeper.delivery_sweep),
        ("beat outbox-sweep: outbox_sweep", outbox.outbox_sweep),
        ("beat imports-resume: imports_resume", imports_resume),
        ("expired ids (selector)", lambda: shop_selectors.orders_expired_ids(now=now + timedelta(minutes=20))),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_plans")
    parser.add_argument("--keep", action="store_true", help="reuse the database if it holds a history")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--seq-scan-rows", type=int, default=10_000)
    options = parser.parse_args()
    database_url = f"{options.server}/{options.database}"

    import psycopg2

    try:
        psycopg2.connect(database_url).close()
        exists = True
    except psycopg2.OperationalError:
        exists = False
    if not (options.keep and exists):
        database_recreate(options.server, options.database)
    _setup_django(database_url)
    from django.core.management import call_command

    from kameng.celery import KamengTask

    call_command("migrate", verbosity=0)
    if not _history_present():
        started = time.monotonic()
        order_history_fill(orders=options.orders)
        print(f"history: {options.orders} orders filled in {time.monotonic() - started:.0f} s")
    logging.disable(logging.WARNING)  # the history's gateways are not configured: their queries fail, logged
    # No broker: a task "sent" is dropped (the database is the record; this measures the reads).
    KamengTask.send_quietly = lambda self, *args, **kwargs: True
    KamengTask.apply_async = lambda self, *args, **kwargs: None

    rows = _table_rows()
    print(
        f"shop_order {rows.get('shop_order', 0):,.0f} rows, payments_payment {rows.get('payments_payment', 0):,.0f},"
        f" shop_orderevent {rows.get('shop_orderevent', 0):,.0f}, delivery_deliverymessage"
        f" {rows.get('delivery_deliverymessage', 0):,.0f}, cardpool_cardkey {rows.get('cardpool_cardkey', 0):,.0f}"
    )
    flagged = 0
    for name, run in _scenarios():
        statements = _statements_captured(run)
        print(f"\n== {name}: {len(statements)} statement(s)")
        for sql, params in statements:
            milliseconds, scans, text = _explained(sql, params)
            shown = " ".join(_prepared_text(sql).split())
            seq = [
                scan
                for scan in scans
                if scan.startswith("Seq Scan") and rows.get(scan.split(" on ")[1].split()[0], 0) > options.seq_scan_rows
            ]
            flagged += bool(seq)
            timing = "  (planned)" if milliseconds is None else f"{milliseconds:9.3f} ms"
            print(f"{timing}  {'SEQ SCAN  ' if seq else ''}{shown[:150]}")
            for scan in scans:
                print(f"              {scan}")
            if options.plans:
                print("\n".join("              | " + line for line in text.splitlines()))
    print(f"\n{flagged} statement(s) with a sequential scan of a table over {options.seq_scan_rows:,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
