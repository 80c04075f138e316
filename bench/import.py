#!/usr/bin/env python
"""Import throughput: 1,000,000 keys (+10 % duplicates) through the project's import pipeline on
PostgreSQL, beside a raw COPY of the same rows into a bare table, and the importing process's
peak memory. Then the same file again, which must add nothing. Targets: >= 20,000 keys/s end to
end and < 500 MB peak.

    .venv/bin/python bench/import.py [--keys 1000000]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402


def child(database_url: str, path: str, slug: str) -> None:
    """Runs the import in its own process so its peak memory is its own."""
    os.environ.update(
        {"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "kameng.settings", "LOG_LEVEL": "WARNING"}
    )
    import django

    django.setup()
    from django.core.management import call_command

    started = time.perf_counter()
    out = io.StringIO()
    call_command("import_keys", path, "--product", slug, stdout=out)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds:.3f} {peak:.0f} {out.getvalue().splitlines()[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_import")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    database_url = f"{options.server}/{options.database}"
    if options.child:
        child(database_url, *options.child)
        return 0

    database_recreate(options.server, options.database)
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    slug = "bench-import"
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'kameng.settings'); django.setup();"
                "from shop.models import Category, Product;"
                "c = Category.objects.create(slug='bench', name='bench');"
                f"Product.objects.create(category=c, slug='{slug}', name='bench', price=1)"
            ),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )

    unique = [f"CARD-{i:09d}-{secrets.token_hex(8)}" for i in range(options.keys)]
    lines = unique + unique[: options.keys // 10]
    work = Path(tempfile.mkdtemp(prefix="kameng-import-"))
    path = work / "keys.txt"
    path.write_text("\n".join(lines) + "\n")

    import psycopg2

    # Baseline: COPY of the same number of rows (a key-sized text column) into a bare table.
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE bare_keys (id bigserial PRIMARY KEY, secret text)")
        started = time.perf_counter()
        with open(path) as handle:
            cursor.copy_expert("COPY bare_keys (secret) FROM STDIN", handle)
        conn.commit()
        raw_seconds = time.perf_counter() - started
    conn.close()

    def run() -> tuple[float, float, str]:
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(path),
                slug,
                "--server",
                options.server,
                "--database",
                options.database,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, peak, summary = result.stdout.strip().split(" ", 2)
        return float(seconds), float(peak), summary

    seconds, peak, summary = run()
    again_seconds, again_peak, again_summary = run()
    rate, raw_rate = len(lines) / seconds, len(lines) / raw_seconds
    print(
        f"{len(lines)} lines ({options.keys} unique keys + {len(lines) - options.keys} duplicates), "
        f"PostgreSQL at {options.server}"
    )
    print(f"raw COPY into a bare table       : {raw_rate:10.0f} lines/s  ({raw_seconds:.1f} s)")
    print(f"kameng import (encrypt + dedupe) : {rate:10.0f} lines/s  ({seconds:.1f} s), peak memory {peak:.0f} MB")
    print(f"ratio kameng / raw COPY          : {rate / raw_rate:.2f}")
    print(f"first import : {summary}")
    print(f"same file again ({again_seconds:.1f} s, peak {again_peak:.0f} MB): {again_summary}")
    print("targets: >= 20,000 lines/s end to end, peak < 500 MB, the second import adds 0")
    fresh, after = _reservation_times(database_url, slug)
    print(
        f"reserving one key: fresh pool {fresh:.2f} ms; after {options.keys} keys were sold {after:.2f} ms "
        f"(x{after / fresh:.2f}, target within x2)"
    )
    return 0


def _reservation_times(database_url: str, slug: str) -> tuple[float, float]:
    """Median time of order_deliver() for one key: on a fresh pool of a new product, then on the
    million-key product after every key has been sold (with autovacuum's settings applied)."""
    script = f"""
import os, statistics, time, secrets, django
os.environ.update(
    {{"DATABASE_URL": "{database_url}", "DJANGO_SETTINGS_MODULE": "kameng.settings", "LOG_LEVEL": "WARNING"}}
)
django.setup()
from datetime import timedelta
from decimal import Decimal
from django.db import connection
from django.utils import timezone
from cardpool.importing import cardkeys_import_text
from delivery.services import order_deliver
from shop.models import Order, Product

def orders(product, n):
    now = timezone.now()
    return [
        Order.objects.create(
            number="R" + secrets.token_hex(9), access_token_hash=secrets.token_hex(32), product=product,
            quantity=1, unit_price=Decimal("1"), total=Decimal("1"), contact="13800138000", contact_kind="mobile",
            query_password_hash="-", status="paid", paid_at=now, expires_at=now + timedelta(hours=1),
        ).pk
        for _ in range(n)
    ]

def timed(product):
    ids = orders(product, 50)
    cardkeys_import_text(product=product, text="\\n".join("NEW-" + secrets.token_hex(8) for _ in range(60)))
    times = []
    for pk in ids:
        started = time.perf_counter()
        assert order_deliver(order_id=pk).status == "delivered"
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)

big = Product.objects.get(slug="{slug}")
small = Product.objects.create(category=big.category, slug="fresh-" + secrets.token_hex(3), name="fresh", price=1)
fresh = timed(small)
sold_to = orders(big, 1)[0]
with connection.cursor() as cursor:
    cursor.execute(
        "UPDATE cardpool_cardkey SET status = 'sold', order_id = %s, sold_at = now() WHERE product_id = %s",
        [sold_to, big.pk],
    )
    cursor.execute("VACUUM ANALYZE cardpool_cardkey")
print(fresh, timed(big))
"""  # noqa: S608 - a Python script for a subprocess; its SQL takes its values as parameters
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    fresh, after = map(float, result.stdout.split()[-2:])
    return fresh, after


if __name__ == "__main__":
    sys.exit(main())
