#!/usr/bin/env python
"""The storefront's pages under gunicorn at a small shop and at a large one, beside a bare view.

Fills two databases with the same 50 products, fast, in SQL (generate_series): a small shop
(2,000 keys, 1,000 delivered orders) and a large one (by default 2,000,000 keys and 1,000,000
delivered orders: one sold key per order, the rest available, 1 % of those expired). Starts one
gunicorn on each (4 sync workers each, as bench/notify.py) and drives, with wrk, in alternating
rounds on both: ``GET /healthz`` (the one-query bare view), the catalog ``/``, the product pages
``/p/<slug>/`` (all 50 in turn) and order pages ``/order/<token>/`` (2,000 delivered orders in
turn, each showing its decrypted key). Every page is driven twice: as fast as it goes (requests/s,
p99) and paced at about 100 requests/s (p99 at that load). Prints each round, then medians.

Targets on the 2-core machine: each page at the large size within 2x of the small one (its
requests/s); the catalog >= 0.3 of the bare view's rate; p99 <= 100 ms at 100 requests/s.

    .venv/bin/python bench/storefront.py [--rounds 3] [--seconds 5] [--keys 2000000] [--orders 1000000]

Needs wrk (Debian: apt-get install wrk) and PostgreSQL on 127.0.0.1. Uses (and recreates) the
databases kameng_bench_storefront_small and _large. The large fill takes a few minutes.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402
from bench_server import gunicorn_start, production_environment, wrk_run  # noqa: E402

PRODUCTS = 50
SAMPLE_ORDERS = 2000
PACED_RATE = 100
PACED_CONNECTIONS = 4
# Each connection waits this long after an answer: 4 connections x (36 ms + a few ms) is about 100/s.
PACED_PAUSE_MS = 36

# Each request is formatted once, in init (as bench/notify.py); paced runs wait between a
# response and the next request on the same connection so that the connections together send
# about PACED_RATE requests/s.
LUA = r"""
local requests = {}
local index = 0
local pause = 0
function init(args)
  pause = tonumber(args[2])
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", line)
  end
end
function request()
  index = index + 1
  return requests[((index - 1) % #requests) + 1]
end
"""
LUA_PACED = (
    LUA
    + r"""
function delay()
  return pause
end
"""
)


def _wrk(url: str, seconds: int, connections: int, threads: int, script: list[str] | None = None) -> dict:
    return wrk_run(url, seconds, connections, threads, script, settle_seconds=1)


def bench_environment(*, database_url: str, work: Path) -> dict[str, str]:
    return production_environment(database_url=database_url, work=work)


FILL_SQL = """
INSERT INTO shop_order (number, access_token_hash, product_id, quantity, unit_price, total, contact, contact_kind,
                        query_password_hash, lookup_digest, language, status, exception_reason, exception_note,
                        created_at, expires_at, paid_at, delivered_at, staff_note, is_test, updated_at)
SELECT 'B' || lpad(i::text, 19, '0'), md5('order' || i) || md5('hash' || i),
       %(first_product)s + (i - 1) %% %(products)s,
       1, 9.90, 9.90, 'buyer' || i || '@example.com', 'email', '-', md5('lookup' || i) || md5('digest' || i), '',
       'delivered', '', '',
       now() - interval '30 days' + i * interval '1 second', now(), now(), now(), '', false, now()
  FROM generate_series(1, %(orders)s) AS i;

INSERT INTO cardpool_cardkey (product_id, ciphertext, key_version, blind_index, index_version, mask, status, order_id,
                              expires_at, max_uses, uses, created_at, sold_at)
SELECT o.product_id, '\\x00'::bytea, 1, md5('sold' || o.id) || md5('key' || o.id), 1, 'KE****01', 'sold', o.id,
       NULL, 1, 1, now(), now()
  FROM shop_order o;

INSERT INTO cardpool_cardkey (product_id, ciphertext, key_version, blind_index, index_version, mask, status, order_id,
                              expires_at, max_uses, uses, created_at, sold_at)
SELECT %(first_product)s + i %% %(products)s, '\\x00'::bytea, 1, md5('free' || i) || md5('key' || i), 1, 'KE****02',
       'available', NULL, CASE WHEN i %% 100 = 0 THEN now() - interval '1 day' END, 1, 0, now(), NULL
  FROM generate_series(1, %(available)s) AS i;
"""


def shop_fill(*, keys: int, orders: int) -> tuple[list[str], list[str]]:
    """The shop in the current database; returns (product paths, order page paths)."""
    from decimal import Decimal

    from django.db import connection

    from cardpool.crypto import secret_encrypt
    from cardpool.models import CardKey
    from shop.models import Category, Order, Product
    from shop.order_tokens import order_access_token, order_access_token_hash

    category = Category.objects.create(slug="bench", name="点卡")
    products = Product.objects.bulk_create(
        [
            Product(category=category, slug=f"bench-{n}", name=f"Steam ¥{n}", price=Decimal("9.90"), max_quantity=10)
            for n in range(PRODUCTS)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            FILL_SQL,
            {"first_product": products[0].pk, "products": PRODUCTS, "orders": orders, "available": keys - orders},
        )
    # The orders whose pages are requested: their real link hashes and real encrypted keys.
    step = max(orders // SAMPLE_ORDERS, 1)
    sample = list(
        Order.objects.filter(pk__in=range(1, orders + 1, step)[:SAMPLE_ORDERS]).values_list(
            "pk", "number", "product_id"
        )
    )
    # Table names from our models; the values go as parameters.
    order_sql = f"UPDATE {Order._meta.db_table} SET access_token_hash = %s WHERE id = %s"  # noqa: S608
    key_sql = f"UPDATE {CardKey._meta.db_table} SET ciphertext = %s, key_version = %s WHERE order_id = %s"  # noqa: S608
    with connection.cursor() as cursor:
        for pk, number, product_id in sample:
            version, sealed = secret_encrypt(secret=f"KEY-{number}", product_id=product_id)
            cursor.execute(order_sql, [order_access_token_hash(number=number), pk])
            cursor.execute(key_sql, [sealed, version, pk])
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return [f"/p/{p.slug}/" for p in products], [f"/order/{order_access_token(number=n)}/" for _pk, n, _p in sample]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per page, size and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per shop")
    parser.add_argument("--keys", type=int, default=2_000_000, help="keys of the large shop")
    parser.add_argument("--orders", type=int, default=1_000_000, help="delivered orders of the large shop")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_storefront")
    parser.add_argument("--explain", action="store_true", help="print the catalog's stock plan at each size and stop")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="kameng-bench-"))
    sizes = {"small": (2_000, 1_000), "large": (options.keys, options.orders)}
    shops = {}
    for size, (keys, orders) in sizes.items():
        database = f"{options.database}_{size}"
        database_recreate(options.server, database)
        env = bench_environment(database_url=f"{options.server}/{database}", work=work)
        started = time.monotonic()
        filled = subprocess.run(
            [sys.executable, __file__, "--fill", str(keys), str(orders), str(work / f"{size}-")],
            env=env,
            capture_output=True,
            text=True,
        )
        if filled.returncode != 0:
            print(filled.stdout, filled.stderr, file=sys.stderr)
            return 1
        print(
            f"{size}: {keys} keys, {orders} delivered orders, {PRODUCTS} products, "
            f"filled in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if options.explain:
            print(subprocess.run([sys.executable, __file__, "--plan"], env=env, capture_output=True, text=True).stdout)
        shops[size] = env
    if options.explain:
        return 0

    scripts = {}
    for name, text in (("rotate", LUA), ("paced", LUA_PACED)):
        scripts[name] = work / f"{name}.lua"
        scripts[name].write_text(text)
    catalog = work / "catalog.txt"
    catalog.write_text("/\n")
    pause = str(PACED_PAUSE_MS)
    servers = []
    try:
        bases = {}
        for size, env in shops.items():
            port = 18000 + secrets.randbelow(1000)
            servers.append(gunicorn_start(env=env, port=port, workers=options.workers))
            bases[size] = f"http://127.0.0.1:{port}"
        pages = {"catalog": catalog, "product": work / "small-products.txt", "order": None}
        rounds = []
        for size, base in bases.items():  # warm every worker up
            _wrk(f"{base}/healthz", 2, options.connections, options.threads)
            for page in ("catalog", "product", "order"):
                paths = pages[page] or work / f"{size}-orders.txt"
                _wrk(base, 2, options.connections, options.threads, script=[str(scripts["rotate"]), str(paths), "0"])
        for _round in range(options.rounds):
            result = {}
            for size, base in bases.items():
                result[(size, "bare")] = _wrk(f"{base}/healthz", options.seconds, options.connections, options.threads)
            for page in ("catalog", "product", "order"):
                for size, base in bases.items():
                    paths = str(work / f"{size}-orders.txt") if page == "order" else str(pages[page])
                    if page == "product":
                        paths = str(work / f"{size}-products.txt")
                    result[(size, page)] = _wrk(
                        base,
                        options.seconds,
                        options.connections,
                        options.threads,
                        script=[str(scripts["rotate"]), paths, "0"],
                    )
                    result[(size, page, "paced")] = _wrk(
                        base, options.seconds, PACED_CONNECTIONS, 1, script=[str(scripts["paced"]), paths, pause]
                    )
            rounds.append(result)
            _round_print(len(rounds), result)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
    return _summary_print(rounds, options)


def _round_print(number: int, result: dict) -> None:
    for size in ("small", "large"):
        bare = result[(size, "bare")]
        parts = [f"bare {bare['rps']:7.1f}/s p99 {bare['p99']:6.2f}"]
        for page in ("catalog", "product", "order"):
            fast, paced = result[(size, page)], result[(size, page, "paced")]
            parts.append(
                f"{page} {fast['rps']:6.1f}/s p99 {fast['p99']:6.2f} (x{fast['rps'] / bare['rps']:.2f}),"
                f" at {paced['rps']:5.1f}/s p99 {paced['p99']:6.2f}"
            )
        print(f"round {number} {size:5}: " + " | ".join(parts), flush=True)


def _summary_print(rounds: list[dict], options) -> int:
    def med(size, page, key, paced=False):
        return median(r[(size, page, "paced") if paced else (size, page)][key] for r in rounds)

    print(time.strftime("%Y-%m-%d %H:%M %Z"), "python bench/storefront.py", " ".join(sys.argv[1:]))
    print(
        f"gunicorn {options.workers} sync workers per shop, "
        f"wrk {options.threads} threads x {options.connections} connections "
        f"(paced: {PACED_CONNECTIONS} connections at about {PACED_RATE}/s), "
        f"{options.rounds} rounds of {options.seconds} s, medians; ms"
    )
    print(
        f"{'':9} {'small req/s':>11} {'p99':>7} {'large req/s':>11} {'p99':>7} {'large/small':>11} "
        f"{'/bare (large)':>13}   paced: small req/s, p99 | large req/s, p99"
    )
    failed = 0
    for page in ("bare", "catalog", "product", "order"):
        small, large = med("small", page, "rps"), med("large", page, "rps")
        to_bare = median(r[("large", page)]["rps"] / r[("large", "bare")]["rps"] for r in rounds)
        to_small = median(r[("large", page)]["rps"] / r[("small", page)]["rps"] for r in rounds)
        line = (
            f"{page:9} {small:11.1f} {med('small', page, 'p99'):7.2f} {large:11.1f} {med('large', page, 'p99'):7.2f} "
            f"{to_small:11.2f} {to_bare:13.2f}"
        )
        if page != "bare":
            paced = {size: (med(size, page, "rps", True), med(size, page, "p99", True)) for size in ("small", "large")}
            line += "   " + " | ".join(f"{rate:6.1f} {p99:7.2f}" for rate, p99 in paced.values())
            # A page that cannot keep up with the pace has no p99 "at 100/s" worth the name.
            kept_up = all(rate >= 0.8 * PACED_RATE for rate, _p99 in paced.values())
            failed += to_small < 0.5 or not kept_up or paced["large"][1] > 100 or (page == "catalog" and to_bare < 0.3)
        print(line)
    errors = sum(value["errors"] for r in rounds for value in r.values())
    print(
        f"targets: large >= 0.5 of small, catalog >= 0.3 of the bare view, paced >= 80/s with p99 <= 100 ms; "
        f"{'all met' if not failed else f'{failed} page(s) missed'}; {errors} non-2xx answers"
    )
    return 0 if errors == 0 else 1


def _fill_main(keys: int, orders: int, prefix: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    products, order_pages = shop_fill(keys=keys, orders=orders)
    Path(prefix + "products.txt").write_text("\n".join(products) + "\n")
    Path(prefix + "orders.txt").write_text("\n".join(order_pages) + "\n")


def _plan_main() -> None:
    """EXPLAIN ANALYZE of the catalog's stock query, as the catalog sends it."""
    import django

    django.setup()
    from django.db import connection

    from shop import selectors

    with connection.execute_wrapper(_explain):
        selectors.catalog_categories()


def _explain(execute, sql, params, many, context):
    if not sql.lstrip().upper().startswith(("PREPARE", "SAVEPOINT", "RELEASE", "SET")):
        print(sql if len(sql) < 400 else sql[:400] + " ...")
        with context["connection"].connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print("\n".join(row[0] for row in cursor.fetchall()))
    return execute(sql, params, many, context)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fill"]:
        _fill_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    if sys.argv[1:2] == ["--plan"]:
        _plan_main()
        sys.exit(0)
    sys.exit(main())
