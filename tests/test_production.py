"""The production path: the compose services' own commands (gunicorn, worker, beat) against the
local PostgreSQL and Redis, and a buyer buying a key over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from payments.registry import gateway_get
from payments.services import payment_start
from shop.models import Order, OrderStatus
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.processes import database_connections_cut, shop_start
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@pytest.fixture
def production(tmp_path):
    shop = shop_start(tmp_path)
    try:
        yield shop.url, shop.web, shop.worker, shop.beat
    finally:
        shop.stop()


def test_buyer_buys_a_key_through_gunicorn_worker_and_beat(production):
    base, _web, worker, beat = production
    product = ProductFactory(name="Steam ¥50", price="48.00")
    keys = stock_product(product, 3)
    browser = requests.Session()

    product_page = browser.get(f"{base}/p/{product.slug}/")
    assert product.name in product_page.text and "库存 3" in product_page.text
    checkout = browser.post(
        f"{base}/p/{product.slug}/",
        data={
            "csrfmiddlewaretoken": _csrf(product_page.text),
            "quantity": 1,
            "contact": "buyer@example.com",
            "query_password": "pw1234",
        },
        headers={"Referer": f"{base}/p/{product.slug}/"},
        allow_redirects=False,
    )
    assert checkout.status_code == 302, checkout.text[:500]
    pay_url = base + checkout.headers["Location"]
    order_url = pay_url.removesuffix("pay/")
    pay_page = browser.get(pay_url)
    to_gateway = browser.post(
        pay_url,
        data={"csrfmiddlewaretoken": _csrf(pay_page.text), "gateway": "sandbox"},
        headers={"Referer": pay_url},
        allow_redirects=False,
    )
    sandbox_page = browser.get(base + to_gateway.headers["Location"]).text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', sandbox_page))
    notify = requests.post(f"{base}/payments/sandbox/notify/", data=fields, timeout=30)
    assert notify.status_code == 200 and notify.text == "success"

    shown = wait_until(
        lambda: next((k for k in keys if k in browser.get(order_url).text), None),
        timeout=30,
        message="the key on the order page",
    )
    assert product.usage_instructions in browser.get(order_url).text
    assert requests.get(f"{base}/static/shop/site.css", timeout=30).status_code == 200
    assert shown not in worker.log()
    token = order_url.rstrip("/").rsplit("/", 1)[-1]
    assert token not in _web.log(), "the order page's token must not land in gunicorn's log"
    wait_until(lambda: "delivery.tasks.delivery_sweep" in beat.log(), timeout=30, message="beat to send the sweeper")


def test_notifications_after_the_database_cut_every_connection_are_still_confirmed(production):
    base, _web, _worker, _beat = production
    product = ProductFactory()
    stock_product(product, 6)
    orders = [OrderFactory(product=product, contact="13800138000", contact_kind="mobile") for _ in range(6)]
    payments = [payment_start(order=order, gateway=gateway_get("sandbox"))[0] for order in orders]

    def notify(payment):
        fields = sandbox_notification(out_trade_no=payment.out_trade_no, amount=payment.amount)
        return requests.post(f"{base}/payments/sandbox/notify/", data=fields, timeout=30)

    # Every gunicorn worker holds a persistent connection (CONN_MAX_AGE) after its first requests.
    for payment in payments[:2]:
        assert notify(payment).text == "success"
    for _ in range(6):
        requests.get(f"{base}/healthz", timeout=10)

    # The database drops every connection but this test's own, as a restart or a failover does.
    assert database_connections_cut() >= 1

    answers = [notify(payment) for payment in payments[2:]]
    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "success")] * 4
    wait_until(
        lambda: Order.objects.filter(pk__in=[o.pk for o in orders], status=OrderStatus.DELIVERED).count() == 6,
        timeout=60,
        message="all six orders delivered",
    )


def test_the_compose_and_image_gunicorn_commands_redact_their_access_log():
    """Order pages carry their access token in the path: an access log written as it comes would
    keep every buyer's link to their keys (Caddy writes none)."""
    root = Path(__file__).parent.parent
    compose_web = re.search(
        r"\n  web:\n(?:    .*\n)*?    command: (\[.*\])", (root / "docker-compose.yml").read_text()
    ).group(1)
    image_cmd = next(line for line in (root / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))

    assert "gunicorn" in compose_web and "gunicorn" in image_cmd
    for command in (compose_web, image_cmd):
        assert "--access-logfile" not in command or "kameng.log_redaction.GunicornLogger" in command
