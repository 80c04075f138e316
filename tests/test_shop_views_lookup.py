"""Finding orders again: by number, by contact, and the orders this browser remembers."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from shop.browser_orders import COOKIE_NAME
from shop.models import Order
from shop.services import order_create
from tests.support.factories import ProductFactory, stock_product
from tests.support.storefront import checkout

pytestmark = pytest.mark.django_db


def test_lookup_with_number_and_password_opens_the_order(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")

    response = client.post(reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"})

    assert response.status_code == 302 and response["Location"] == reverse("shop:order", args=[order.access_token])


def test_lookup_with_wrong_password_reveals_nothing(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")

    response = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "wrong-pw"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    page = response.content.decode()

    assert response.status_code == 200
    assert "No order matches" in page
    assert order.access_token not in page and order.contact not in page


def test_lookup_is_rate_limited_per_ip(client, settings):
    settings.ORDER_LOOKUP_RATE = "3/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product, password="right-pw")
    for _ in range(3):
        client.post(reverse("shop:lookup"), {"number": order.number, "query_password": "guess"})

    response = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 429
    assert "Too many lookups" in response.content.decode()
    other_ip = client.post(
        reverse("shop:lookup"), {"number": order.number, "query_password": "right-pw"}, REMOTE_ADDR="10.9.9.9"
    )
    assert other_ip.status_code == 302


def _orders_for(product, contact, password, count):
    return [
        order_create(product=product, quantity=1, contact=contact, query_password=password, client_ip=None)
        for _ in range(count)
    ]


def _lookup(client, reference, password, **extra):
    return client.post(
        reverse("shop:lookup"), {"number": reference, "query_password": password}, HTTP_ACCEPT_LANGUAGE="en", **extra
    )


def test_lookup_by_email_and_password_lists_that_contacts_orders_newest_first(client):
    product = ProductFactory(name="Steam ¥50")
    stock_product(product, 5)
    mine = _orders_for(product, "buyer@example.com", "right-pw", 3)
    other_password = _orders_for(product, "buyer@example.com", "other-pw", 1)[0]
    other_contact = _orders_for(product, "someone@example.com", "right-pw", 1)[0]

    response = _lookup(client, " Buyer@Example.COM ", "right-pw")

    assert response.status_code == 302 and response["Location"] == reverse("shop:lookup") + "?page=1"
    page = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    found = re.findall(r'id="found-orders".*?</ul>', page, re.S)[0]
    assert re.findall(r"<code>(\d+)</code>", found) == [o.number for o in reversed(mine)]
    assert all(reverse("shop:order", args=[o.access_token]) in found for o in mine)
    assert other_password.number not in page and other_contact.number not in page
    assert "Awaiting payment" in found and "Steam ¥50" in found


def test_lookup_by_mobile_number_and_password(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "13800138000", "right-pw", 1)[0]

    response = _lookup(client, "13800138000", "right-pw", follow=True)

    assert order.number in response.content.decode()


def test_lookup_by_contact_pages_ten_orders_at_a_time(client):
    product = ProductFactory()
    stock_product(product, 1)
    orders = _orders_for(product, "buyer@example.com", "right-pw", 12)
    _lookup(client, "buyer@example.com", "right-pw")

    first = client.get(reverse("shop:lookup") + "?page=1", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    second = client.get(reverse("shop:lookup") + "?page=2", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert orders[-1].number in first and orders[0].number not in first and "Page 1 of 2" in first
    assert orders[0].number in second and orders[1].number in second and orders[2].number not in second


def _answer(response, typed: str) -> str:
    """The page with what differs by design removed: the CSRF token and the value typed back."""
    page = response.content.decode()
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)
    return page.replace(f'value="{typed}"', "")


def test_every_lookup_miss_gets_the_same_answer(client, settings):
    settings.ORDER_LOOKUP_RATE = "100/m"
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]

    misses = {
        typed: _lookup(client, typed, "wrong-pw")
        for typed in ("buyer@example.com", "nobody@example.com", "13900000000", order.number, "20260101000000000000")
    }

    answers = {_answer(response, typed) for typed, response in misses.items()}
    assert {response.status_code for response in misses.values()} == {200}
    assert len(answers) == 1
    assert "No order matches these details and query password." in answers.pop()
    assert not client.session.get("shop.lookup")


def test_an_order_from_before_contact_lookup_is_found_by_number_then_by_contact_too(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]
    Order.objects.filter(pk=order.pk).update(lookup_digest="")  # as the migration left older orders

    assert "No order matches" in _lookup(client, "buyer@example.com", "right-pw").content.decode()
    assert _lookup(client, order.number, "right-pw").status_code == 302
    assert order.number in _lookup(client, "buyer@example.com", "right-pw", follow=True).content.decode()


def test_lookup_by_contact_is_rate_limited_per_contact_whatever_the_network(client, settings):
    settings.ORDER_LOOKUP_RATE_CONTACT = "3/h"
    product = ProductFactory()
    stock_product(product, 1)
    _orders_for(product, "buyer@example.com", "right-pw", 1)
    for number in range(3):
        _lookup(client, "buyer@example.com", "guess", REMOTE_ADDR=f"10.0.0.{number}")

    response = _lookup(client, "buyer@example.com", "right-pw", REMOTE_ADDR="10.0.1.1")

    assert response.status_code == 429
    assert "Too many lookups for this email or mobile number" in response.content.decode()
    assert _lookup(client, "other@example.com", "x", REMOTE_ADDR="10.0.1.1").status_code == 200


def test_a_contacts_list_is_not_shown_to_another_browser(client):
    product = ProductFactory()
    stock_product(product, 1)
    order = _orders_for(product, "buyer@example.com", "right-pw", 1)[0]
    _lookup(client, "buyer@example.com", "right-pw")

    elsewhere = Client().get(reverse("shop:lookup") + "?page=1").content.decode()

    assert order.number not in elsewhere


def test_the_order_page_remembers_its_orders_in_this_browser(client):
    product = ProductFactory(name="Netflix 月卡")
    stock_product(product, 2)
    first = checkout(client, product)
    second = checkout(client, product, contact="13800138000")
    client.get(reverse("shop:order", args=[first.access_token]))
    client.get(reverse("shop:order-pay", args=[second.access_token]))

    page = client.get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    remembered = re.findall(r'id="browser-orders".*?</ul>', page, re.S)[0]
    assert re.findall(r"<code>(\d+)</code>", remembered) == [second.number, first.number]
    assert reverse("shop:order", args=[first.access_token]) in remembered and "Netflix 月卡" in remembered
    assert "Orders from this browser" in page
    assert (
        "Orders from this browser"
        not in Client().get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    )


def test_the_browser_orders_cookie_is_signed_http_only_lax_and_long_lived(client, settings):
    settings.SESSION_COOKIE_SECURE = True
    product = ProductFactory()
    stock_product(product, 1)
    order = checkout(client, product)

    response = client.get(reverse("shop:order", args=[order.access_token]))

    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) >= 300 * 86400
    assert str(order.pk) in cookie.value and ":" in cookie.value  # the id, with its signature


@pytest.mark.parametrize(
    "forge",
    [
        lambda value, other_id: value.replace(value.split(":")[0], str(other_id), 1),
        lambda value, other_id: f"{other_id}:forged-signature",
        lambda value, other_id: str(other_id),
        lambda value, other_id: "\x00\xff;;=",
    ],
    ids=["swapped-id", "forged-signature", "unsigned", "garbage"],
)
def test_a_tampered_browser_orders_cookie_shows_nothing(client, forge):
    product = ProductFactory()
    stock_product(product, 2)
    mine = checkout(client, product)
    response = client.get(reverse("shop:order", args=[mine.access_token]))
    someone_elses = _orders_for(product, "victim@example.com", "pw12", 1)[0]

    client.cookies[COOKIE_NAME] = forge(response.cookies[COOKIE_NAME].value, someone_elses.pk)
    page = client.get(reverse("shop:lookup"), HTTP_ACCEPT_LANGUAGE="en")

    assert page.status_code == 200
    assert someone_elses.number not in page.content.decode() and mine.number not in page.content.decode()


def test_the_browser_remembers_a_bounded_number_of_orders(client, settings):
    settings.BROWSER_ORDERS_MAX = 3
    product = ProductFactory()
    stock_product(product, 1)
    orders = _orders_for(product, "buyer@example.com", "pw12", 5)
    for order in orders:
        client.get(reverse("shop:order", args=[order.access_token]))

    page = client.get(reverse("shop:lookup")).content.decode()

    assert all(o.number in page for o in orders[2:]) and not any(o.number in page for o in orders[:2])
