"""A buyer's steps through the storefront over HTTP, for tests."""

from __future__ import annotations

from urllib.parse import urlencode

from django.test import Client
from django.urls import reverse

from payments.models import Payment
from shop.models import Order
from shop.selectors import order_by_access_token
from tests.support.platforms import sandbox_notification


def checkout(
    client: Client, product, *, quantity: int = 1, contact: str = "buyer@example.com", password: str = "secret-pw"
) -> Order:
    response = client.post(
        reverse("shop:product", args=[product.slug]),
        {"quantity": quantity, "contact": contact, "query_password": password},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return order_by_access_token(token=response["Location"].rstrip("/").split("/")[-2])


PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148"


def start_sandbox_payment(client: Client, order: Order, *, phone: bool = False) -> Payment:
    """Press Pay with the sandbox (from a phone: a payment of its own, not the desktop's reused)."""
    extra = {"HTTP_USER_AGENT": PHONE_UA} if phone else {}
    response = client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"}, **extra)
    assert response.status_code == 302
    assert "/payments/sandbox/pay/" in response["Location"]
    return Payment.objects.filter(order=order).latest("created_at")


def sandbox_pay_page(client: Client, order: Order):
    """Choose the sandbox on the order's pay page and open the page it redirects to."""
    response = client.post(reverse("shop:order-pay", args=[order.access_token]), {"gateway": "sandbox"})
    assert response.status_code == 302 and "/payments/sandbox/pay/" in response["Location"]
    return client.get(response["Location"])


def post_notification(client: Client, fields: dict, gateway: str = "sandbox"):
    """POST a notification form as the platforms send it (urlencoded, UTF-8)."""
    return client.post(
        reverse("payments:notify", args=[gateway]),
        urlencode(fields),
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )


def sandbox_pay(client: Client, on_commit, order: Order):
    """Press Pay with the sandbox and post the platform's paid notification; on-commit work
    (delivery, messages) runs as a real commit would run it. Returns the notification's answer."""
    payment = start_sandbox_payment(client, order)
    with on_commit():
        return post_notification(client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total))


def pay(client, on_commit, product, quantity=1, contact="buyer@example.com"):
    """Check out, pay with the sandbox and let the delivery run (on commit); returns the order as it is
    afterwards."""
    order = checkout(client, product, quantity=quantity, contact=contact)
    payment = start_sandbox_payment(client, order)
    with on_commit():
        response = post_notification(
            client, sandbox_notification(out_trade_no=payment.out_trade_no, amount=order.total)
        )
    assert response.content == b"success"
    order.refresh_from_db()
    return order


def order_page(client, order) -> str:
    """The order page's HTML, as the buyer opening its link sees it."""
    return client.get(reverse("shop:order", args=[order.access_token])).content.decode()
