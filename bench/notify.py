#!/usr/bin/env python
"""Verified Alipay notifications per second through the real endpoint under gunicorn.

Prepares N pending orders with Alipay payments, signs one genuine notification for each with
the platform simulator's keys, starts gunicorn on loopback (as docker-compose does) and drives
``GET /healthz`` (a one-query Django view) and ``POST /payments/alipay/notify/`` with wrk in
alternating rounds, each notification request a different notification (every round has its
own). Prints requests/s, p50 and p99 of both per round, and the medians over the rounds: this
VM's speed drifts from minute to minute, so a single pair of runs is not a ratio to trust.
Targets on the 2-core machine: >= 500 notifications/s, p99 <= 50 ms, >= 0.4 of the bare view's
rate.

    .venv/bin/python bench/notify.py [--rounds 3] [--seconds 6] [--connections 16] [--workers 4]

Needs wrk (Debian: apt-get install wrk) and PostgreSQL on 127.0.0.1. With PostgreSQL the
notifications announce their paid orders with NOTIFY (shop/outbox.py) and no worker
listens, so delivery is not part of the figure (bench/deliver.py measures it); with
DELIVERY_DISPATCH=broker the tasks go to Redis database 14 and stay there.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import median
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_database import database_recreate  # noqa: E402
from bench_server import gunicorn_start, production_environment, wrk_run  # noqa: E402

# Each request is formatted once, in init: formatting it per request in Lua costs wrk CPU, taken
# from the server on this 2-core machine (the bare view's wrk runs no script).
LUA = r"""
local requests = {}
local index = 0
local counter = 0
function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end
function init(args)
  local threads = tonumber(args[2])
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"}
  local n = 0
  for line in io.lines(args[1]) do
    if n % threads == thread_id then
      requests[#requests + 1] = wrk.format("POST", "/payments/alipay/notify/", headers, line)
    end
    n = n + 1
  end
end
function request()
  index = index + 1
  return requests[((index - 1) % #requests) + 1]
end
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="per endpoint and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--orders", type=int, default=0, help="default: 1,400 per second of notify rounds")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="kameng_bench_notify")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    database_recreate(options.server, options.database)
    orders = options.orders or 1400 * options.seconds * options.rounds

    from tests.support.payment_platforms import AlipayPlatform

    platform = AlipayPlatform()
    work = Path(tempfile.mkdtemp(prefix="kameng-bench-"))
    port = 18000 + secrets.randbelow(1000)
    env = bench_environment(platform, database_url=f"{options.server}/{options.database}", work=work)
    django_setup(env)
    bodies = notifications_prepare(orders, platform)
    share = len(bodies) // options.rounds
    lines = []
    for round_ in range(options.rounds):
        path = work / f"notifications-{round_ + 1}.txt"
        path.write_text("\n".join(bodies[round_ * share : (round_ + 1) * share]) + "\n")
        lines.append(path)
    script = work / "notify.lua"
    script.write_text(LUA)
    from django.db import connections

    connections.close_all()

    gunicorn = gunicorn_start(env=env, port=port, workers=options.workers, ready_seconds=30)
    try:
        base = f"http://127.0.0.1:{port}"
        wrk_run(f"{base}/healthz", 2, options.connections, options.threads)  # warm every worker up
        rounds = []
        for path in lines:
            bare = wrk_run(f"{base}/healthz", options.seconds, options.connections, options.threads)
            notify = wrk_run(
                base,
                options.seconds,
                options.connections,
                options.threads,
                script=[str(script), str(path), str(options.threads)],
            )
            rounds.append((bare, notify))
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)

    from payments.models import PaymentNotification

    accepted = PaymentNotification.objects.filter(verdict="accepted").count()
    rejected = PaymentNotification.objects.filter(verdict="rejected").count()
    repeated = PaymentNotification.objects.filter(times_received__gt=1).count()
    print(
        f"gunicorn {options.workers} sync workers, wrk {options.threads} threads x {options.connections} connections, "
        f"{options.rounds} rounds of {options.seconds}s per endpoint, PostgreSQL + Redis on loopback"
    )
    for number, (bare, notify) in enumerate(rounds, start=1):
        print(
            f"round {number}: bare GET /healthz {bare['rps']:7.1f} req/s"
            f" p50 {bare['p50']:5.2f} ms p99 {bare['p99']:5.2f} ms"
            f" | notify {notify['rps']:6.1f} req/s p50 {notify['p50']:5.2f} ms p99 {notify['p99']:5.2f} ms"
            f" | ratio {notify['rps'] / bare['rps']:.2f}"
        )
    bare = {key: median(b[key] for b, _n in rounds) for key in ("rps", "p50", "p99")}
    notify = {key: median(n[key] for _b, n in rounds) for key in ("rps", "p50", "p99")}
    ratio = median(n["rps"] / b["rps"] for b, n in rounds)
    sent = sum(n["requests"] for _b, n in rounds)
    errors = sum(n["errors"] for _b, n in rounds)
    print(
        f"median bare one-query view GET /healthz      : {bare['rps']:8.1f} req/s  "
        f"p50 {bare['p50']:6.2f} ms  p99 {bare['p99']:6.2f} ms"
    )
    print(
        f"median Alipay notify (RSA2 verify + confirm) : {notify['rps']:8.1f} req/s  "
        f"p50 {notify['p50']:6.2f} ms  p99 {notify['p99']:6.2f} ms"
    )
    print(
        f"median ratio notify / bare view              : {ratio:.2f}   (targets: >= 500/s, p99 <= 50 ms, ratio >= 0.4)"
    )
    print(
        f"notifications: {sent} sent, {accepted} accepted, {repeated} received more than once, {rejected} rejected, "
        f"{errors} non-2xx answers"
    )
    return 0 if errors == 0 and rejected == 0 else 1


def bench_environment(platform, *, database_url: str, work: Path) -> dict[str, str]:
    """The environment the benchmarked processes run with: production settings (DEBUG off, no
    SSL redirect on loopback), PostgreSQL, and Alipay configured with the simulator's keys."""
    from cryptography.hazmat.primitives import serialization

    return {
        **production_environment(database_url=database_url, work=work),
        "ALIPAY_APP_ID": platform.APP_ID,
        "ALIPAY_SELLER_ID": platform.SELLER_ID,
        "ALIPAY_APP_PRIVATE_KEY": platform.app_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "ALIPAY_PUBLIC_KEY": platform.platform_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }


def django_setup(env: dict[str, str]) -> None:
    """Set this process up with ``env``, migrated, static files collected."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)


def notifications_prepare(count: int, platform) -> list[str]:
    """``count`` pending orders with Alipay payments, and one signed notification body each."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from payments.models import Payment
    from shop.models import Category, Order, Product

    category = Category.objects.create(slug="bench", name="bench")
    product = Product.objects.create(category=category, slug="bench", name="bench", price=Decimal("9.90"))
    now = timezone.now()
    orders = Order.objects.bulk_create(
        [
            Order(
                number=f"B{i:019d}",
                access_token_hash=secrets.token_hex(32),
                product=product,
                quantity=1,
                unit_price=Decimal("9.90"),
                total=Decimal("9.90"),
                contact="13800138000",
                contact_kind="mobile",
                query_password_hash="-",
                expires_at=now + timedelta(hours=1),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )
    payments = Payment.objects.bulk_create(
        [Payment(order=o, gateway="alipay", out_trade_no=f"{o.number}P", amount=Decimal("9.90")) for o in orders],
        batch_size=2000,
    )
    return [urlencode(platform.notification(out_trade_no=p.out_trade_no, amount="9.90")) for p in payments]


if __name__ == "__main__":
    sys.exit(main())
