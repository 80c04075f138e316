#!/usr/bin/env python
"""Sustained delivery: signed notifications at a fixed rate against gunicorn + a Celery worker on
Redis + PostgreSQL, measuring notification → key visible (the delivery transaction's commit).

Starts the production commands (gunicorn, celery worker) on loopback, sends sandbox
notifications for fresh pending orders at ``--rate`` per second for ``--seconds`` from a few
client threads, then reads from the database when each order was delivered. Prints the rate
achieved, delivered orders per second, p50/p99 latency and how many were left undelivered,
beside the raw reservation SQL rate (bench/reserve.py's statements, one process) measured in the
same run. Target on the 2-core machine: 200 paid orders/s for 60 s, p99 <= 250 ms, none left.

    .venv/bin/python bench/deliver.py [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402

SANDBOX_SECRET = "bench-sandbox-secret"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--warmup-seconds", type=int, default=5, help="at the same rate first, not measured")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_deliver")
    options = parser.parse_args()
    total = options.rate * options.seconds

    database_recreate(options.server, options.database)
    import redis

    redis.Redis.from_url("redis://127.0.0.1:6379/12").flushdb()

    port = 19000 + secrets.randbelow(500)
    env = {
        **os.environ,
        "DATABASE_URL": f"{options.server}/{options.database}",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_ROOT": "/tmp/kameng-bench-static",  # noqa: S108 - collectstatic's throwaway target
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "600",
        "PAYMENTS_SANDBOX_ENABLED": "true",
        "PAYMENTS_SANDBOX_SECRET": SANDBOX_SECRET,
        # Every delivery also sends its email through Django's dummy backend (the send task runs).
        "EMAIL_URL": "dummymail://",
        "DJANGO_SETTINGS_MODULE": "kameng.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    warmup_count = options.rate * options.warmup_seconds
    prepared = _prepare(total + warmup_count)
    warmup, payments = prepared[:warmup_count], prepared[warmup_count:]
    raw_rate = _raw_reservation_rate(f"{options.server}/{options.database}", count=2000)
    from django.db import connections

    connections.close_all()

    bin_dir = Path(sys.executable).parent
    web = subprocess.Popen(
        [
            str(bin_dir / "gunicorn"),
            "kameng.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(options.web_workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            str(bin_dir / "celery"),
            "-A",
            "kameng",
            "worker",
            "--loglevel=WARNING",
            f"--concurrency={options.worker_concurrency}",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        time.sleep(3)  # let the worker connect to Redis (not a synchronisation of results)
        from shop.models import Order

        # Warm-up at the same rate, not measured: worker processes import and prepare their
        # statements, connections open, caches fill. Then wait until it has all been delivered.
        _drive(port, warmup, options.rate, options.clients)
        warm_numbers = [number for number, _trade in warmup]
        deadline = time.monotonic() + 60
        while Order.objects.filter(number__in=warm_numbers, status="paid").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        sent_at = _drive(port, payments, options.rate, options.clients)
        deadline = time.monotonic() + 60
        from shop.models import Order

        while Order.objects.filter(product__slug="bench", status="paid").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(timeout=30)

    from shop.models import Order

    measured = {number for number, _trade in payments}
    delivered = {
        number: moment
        for number, moment in Order.objects.filter(product__slug="bench", status="delivered").values_list(
            "number", "delivered_at"
        )
        if number in measured
    }
    latencies = sorted(
        (delivered[number].timestamp() - sent) * 1000 for number, sent in sent_at.items() if number in delivered
    )
    left = total - len(delivered)
    span = max(d.timestamp() for d in delivered.values()) - min(sent_at.values()) if delivered else 1
    achieved = len(sent_at) / (max(sent_at.values()) - min(sent_at.values()) or 1)
    print(
        f"gunicorn {options.web_workers} workers, celery worker concurrency {options.worker_concurrency}, "
        f"Redis + PostgreSQL on loopback; {total} notifications at {options.rate}/s for {options.seconds}s "
        f"after {options.warmup_seconds}s of warm-up at the same rate"
    )
    print(f"raw reservation SQL (psycopg2, 1 process) : {raw_rate:8.1f} orders/s")
    print(f"notifications sent                         : {achieved:8.1f} /s")
    print(
        f"orders delivered                           : {len(delivered) / span:8.1f} /s   "
        f"({len(delivered)} of {total}, {left} left undelivered)"
    )
    if latencies:
        print(
            f"notification -> key visible                : p50 {statistics.median(latencies):7.1f} ms   "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1]:7.1f} ms   max {latencies[-1]:7.1f} ms"
        )
    print("target: 200/s for 60 s, p99 <= 250 ms, 0 left undelivered")
    return 0 if left == 0 else 1


def _prepare(count: int) -> list[tuple[str, str]]:
    """``count`` pending orders with sandbox payments; returns (order number, notification body)."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from cardpool.importing import cardkeys_import_text
    from payments.models import Payment
    from shop.models import Category, Order, Product

    category = Category.objects.create(slug="bench", name="bench")
    product = Product.objects.create(
        category=category, slug="bench", name="bench", price=Decimal("9.90"), low_stock_threshold=0
    )
    lines = "\n".join(f"BENCH-{i}-{secrets.token_hex(6)}" for i in range(count + 1000))
    cardkeys_import_text(product=product, text=lines)
    now = timezone.now()
    orders = Order.objects.bulk_create(
        [
            Order(
                number=f"D{i:019d}",
                access_token_hash=secrets.token_hex(32),
                product=product,
                quantity=1,
                unit_price=Decimal("9.90"),
                total=Decimal("9.90"),
                contact="buyer@example.com",
                contact_kind="email",
                query_password_hash="-",
                expires_at=now + timedelta(hours=2),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )
    Payment.objects.bulk_create(
        [Payment(order=o, gateway="sandbox", out_trade_no=f"{o.number}S", amount=Decimal("9.90")) for o in orders],
        batch_size=2000,
    )
    return [(o.number, f"{o.number}S") for o in orders]


def _raw_reservation_rate(database_url: str, count: int) -> float:
    """bench/reserve.py's statements through psycopg2 for ``count`` fresh paid orders."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reserve", ROOT / "bench" / "reserve.py")
    reserve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reserve)
    product_id, orders = reserve._prepare(count, "raw1", slot=1)
    from django.db import connections

    connections.close_all()
    started = time.perf_counter()
    done, _times = reserve._raw_worker((database_url, product_id, orders, False))
    return done / (time.perf_counter() - started)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()  # noqa: S310 - the http://127.0.0.1 URL built above
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _drive(port: int, payments: list[tuple[str, str]], rate: int, clients: int) -> dict[str, float]:
    """Send one signed notification per payment at ``rate``/s from ``clients`` threads."""
    import hashlib
    import hmac

    sent_at: dict[str, float] = {}
    lock = threading.Lock()
    start = time.time() + 0.5
    interval = 1.0 / rate

    def body(out_trade_no: str) -> str:
        fields = {
            "merchant_id": "kameng-sandbox",
            "out_trade_no": out_trade_no,
            "trade_no": "SBX" + secrets.token_hex(10),
            "total_amount": "9.90",
            "trade_status": "TRADE_SUCCESS",
            "timestamp": str(int(time.time())),
        }
        message = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
        fields["sign"] = hmac.new(SANDBOX_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
        return urlencode(fields)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(index, len(payments), clients):
            number, out_trade_no = payments[i]
            due = start + i * interval
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)  # pacing the load generator, not synchronising a result
            payload = body(out_trade_no)
            moment = time.time()
            connection.request(
                "POST", "/payments/sandbox/notify/", payload, {"Content-Type": "application/x-www-form-urlencoded"}
            )
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                with lock:
                    sent_at[number] = moment

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent_at


if __name__ == "__main__":
    sys.exit(main())
