"""Order page links: a derived token, stored only as a hash (shop/order_tokens.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from shop.models import Order, OrderStatus
from shop.order_tokens import access_token_hash, order_access_token
from tests.support.factories import ProductFactory, stock_product
from tests.support.platforms import sandbox_notification
from tests.support.storefront import checkout, post_notification, start_sandbox_payment

pytestmark = pytest.mark.django_db


def _paid_and_delivered(client, on_commit, product, contact="buyer@example.com") -> Order:
    order = checkout(client, product, contact=contact)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        response = post_notification(
            client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total)
        )
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    return order


def _order_table_dump() -> list[str]:
    """Every column of every order row, as text, the way pg_dump or a backup would hold it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Order._meta.db_table}")  # noqa: S608 - our own table
        return [str(value) for row in cursor.fetchall() for value in row if value is not None]


def test_order_table_dump_holds_no_token_that_opens_the_page(client, on_commit):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = _paid_and_delivered(client, on_commit, product)
    assert keys[0] in client.get(reverse("shop:order", args=[order.access_token])).content.decode()

    dump = _order_table_dump()

    assert order.access_token not in " ".join(dump)
    for value in dump:
        for candidate in {value, value.strip(), value.lower()}:
            if candidate and "/" not in candidate:
                assert client.get(f"/order/{candidate}/").status_code == 404, candidate
    assert order_access_token(number=order.number) == order.access_token  # computed, not stored


def test_delivery_email_and_payment_return_url_carry_a_working_link(client, on_commit):
    product = ProductFactory()
    stock_product(product, 1)

    order = _paid_and_delivered(client, on_commit, product)

    link = f"http://testserver/order/{order.access_token}/"
    assert link in mail.outbox[0].body
    assert client.get(link).status_code == 200
    assert order.access_token_hash == hashlib.sha256(order.access_token.encode()).hexdigest()


def test_order_page_refuses_wrong_forged_and_truncated_tokens(client, settings):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    token = order.access_token
    other_key = hmac.new(b"guessed key", b"kameng.order-access-token:" + order.number.encode(), hashlib.sha256).digest()
    forged = base64.urlsafe_b64encode(other_key).rstrip(b"=").decode()
    wrong = [
        secrets.token_urlsafe(32),
        token[:-1],
        token[:20],
        token + "A",
        token.swapcase(),
        token + "=",
        forged,
        order.number,
        order.access_token_hash,
        order_access_token(number=order.number + "0"),
        "%00",
        "x" * 300,
        "..",
    ]

    assert client.get(reverse("shop:order", args=[token])).status_code == 200
    for candidate in wrong:
        for name in ("shop:order", "shop:order-status", "shop:order-pay"):
            assert client.get(reverse(name, args=[candidate])).status_code == 404, (name, candidate)
        assert client.post(reverse("shop:order-cancel", args=[candidate])).status_code == 404
    assert client.get("/order/%2e%2e/").status_code == 404
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_sms_short_link_still_opens_the_order_page(client, on_commit, settings):
    product = ProductFactory()
    keys = stock_product(product, 1)
    order = _paid_and_delivered(client, on_commit, product, contact="13900139000")
    from delivery.messages import order_short_token

    response = client.get(reverse("shop:order-short", args=[order_short_token(order=order)]))

    assert response.status_code == 302
    assert response["Location"] == reverse("shop:order", args=[order.access_token])
    assert keys[0] in client.get(response["Location"]).content.decode()


def test_lookup_by_number_and_password_redirects_to_a_working_link(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="my-query-pw")

    response = client.post(reverse("shop:lookup"), {"number": order.number, "query_password": "my-query-pw"})

    assert response.status_code == 302
    assert client.get(response["Location"]).status_code in (200, 302)
    assert order.access_token in response["Location"]


def test_changing_the_token_key_and_rekeying_keeps_sent_links_working(client, settings):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)
    sent_before = order.access_token

    settings.ORDER_TOKEN_KEY = "a-new-dedicated-order-token-key-of-enough-length"
    order.refresh_from_db()
    assert order.access_token != sent_before
    assert client.get(reverse("shop:order-pay", args=[sent_before])).status_code == 200  # its hash is stored
    assert client.get(reverse("shop:order-pay", args=[order.access_token])).status_code == 404  # until rekeyed

    call_command("order_tokens_rekey", stdout=io.StringIO())

    assert client.get(reverse("shop:order-pay", args=[order.access_token])).status_code == 200
    assert client.get(reverse("shop:order-pay", args=[sent_before])).status_code == 200
    from shop.services import order_tokens_rekey

    assert order_tokens_rekey() == 0


@pytest.mark.django_db(transaction=True)
def test_links_emailed_before_the_migration_keep_working(client):
    """Orders made while the random token was stored in plaintext: the migration keeps only its
    hash, the old link still opens the page, and the order's new derived link does too."""
    executor = MigrationExecutor(connection)
    before = [("shop", "0012_product_image")]
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    OldOrder = old_apps.get_model("shop", "Order")
    OldProduct = old_apps.get_model("shop", "Product")
    OldCategory = old_apps.get_model("shop", "Category")
    category = OldCategory.objects.create(slug="old", name="old")
    old_product = OldProduct.objects.create(category=category, slug="old", name="old", price="5.00")
    from django.utils import timezone

    old_tokens = {}
    for n in range(3):
        token = secrets.token_urlsafe(32)
        OldOrder.objects.create(
            number=f"2025010100000000000{n}",
            access_token=token,
            product=old_product,
            quantity=1,
            unit_price="5.00",
            total="5.00",
            contact="old@example.com",
            contact_kind="email",
            query_password_hash="-",
            expires_at=timezone.now(),
        )
        old_tokens[f"2025010100000000000{n}"] = token

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    dump = " ".join(_order_table_dump())
    for number, old_token in old_tokens.items():
        order = Order.objects.get(number=number)
        assert old_token not in dump
        assert order.previous_token_hash == access_token_hash(old_token)
        assert client.get(reverse("shop:order", args=[old_token])).status_code == 200
        assert client.get(reverse("shop:order", args=[order.access_token])).status_code == 200
