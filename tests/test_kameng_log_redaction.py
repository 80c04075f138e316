"""No order token in any log: gunicorn's access log and Django's runserver log, through real
processes, after a buyer checks out and opens the order page (kameng/log_redaction.py)."""

from __future__ import annotations

import logging
import re
import sys

import pytest
import requests

from delivery.messages import order_short_token
from kameng.log_redaction import SecretPathFilter, secret_paths_redact
from shop.selectors import order_by_access_token
from tests.support.factories import ProductFactory, stock_product
from tests.support.processes import ServiceProcess, free_port, service_env, shop_start
from tests.support.waiting import wait_until


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def _buyer_visits(base: str, product) -> tuple[str, list[str]]:
    """Check out, open the order page and its status as the browser does (Referer set), follow
    the SMS short link, and probe malformed token paths. Returns (token, what must never be
    logged: the token and the short link's signature)."""
    browser = requests.Session()
    page = browser.get(f"{base}/p/{product.slug}/")
    checkout = browser.post(
        f"{base}/p/{product.slug}/",
        data={
            "csrfmiddlewaretoken": _csrf(page.text),
            "quantity": 1,
            "contact": "13800138000",
            "query_password": "pw1234",
        },
        headers={"Referer": f"{base}/p/{product.slug}/"},
        allow_redirects=False,
    )
    assert checkout.status_code == 302, checkout.text[:500]
    token = checkout.headers["Location"].split("/")[2]
    order_url = f"{base}/order/{token}/"
    assert browser.get(order_url + "pay/").status_code == 200
    assert browser.get(order_url).status_code == 200
    assert browser.get(order_url + "status/", headers={"Referer": order_url}).status_code == 200
    short = order_short_token(order=order_by_access_token(token=token))
    assert browser.get(f"{base}/s/{short}/", allow_redirects=False).headers["Location"] == f"/order/{token}/"
    for malformed in (token[:-1], token + "x", token.upper(), f"%2F{token}", f"%20{token}", f"{token}%00"):
        assert browser.get(f"{base}/order/{malformed}/").status_code == 404
    assert browser.get(f"{base}/order{'%2F'}{token}/").status_code in (200, 404)
    assert browser.get(f"{base}/order/{token}").status_code in (200, 301)  # APPEND_SLASH
    return token, [token, token[:-1], short.split(".")[1]]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_gunicorn_access_log_never_carries_an_order_token(tmp_path):
    product = ProductFactory()
    stock_product(product, 1)
    shop = shop_start(tmp_path, beat=False, web_workers=1, LOG_LEVEL="INFO")
    try:
        _token, secret = _buyer_visits(shop.url, product)
        wait_until(lambda: shop.web.log().count("/order/[redacted]/") >= 8, timeout=20, message="the access log lines")
    finally:
        shop.stop()

    log = shop.web.log()
    assert '"GET /order/[redacted]/status/ HTTP/1.1" 200' in log
    assert f'"{shop.url}/order/[redacted]/"' in log  # the Referer
    assert '"GET /s/[redacted]/ HTTP/1.1" 302' in log
    assert "Not Found: /order/[redacted]/" in log  # django.request's warning for the 404s
    for value in secret:
        assert value not in log


@pytest.mark.postgres  # runserver shares the test database
@pytest.mark.django_db(transaction=True)
def test_runserver_log_never_carries_an_order_token(tmp_path, settings):
    product = ProductFactory()
    stock_product(product, 1)
    port = free_port()
    env = service_env(
        # runserver is the development server: DEBUG on, as ``make run`` runs it.
        tmp_path,
        KAMENG_ENV_FILE="",
        DEBUG="true",
        SECRET_KEY=settings.SECRET_KEY,
        CARDPOOL_KEYS=settings.CARDPOOL_KEYS,
        CARDPOOL_INDEX_KEY=settings.CARDPOOL_INDEX_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL=f"http://127.0.0.1:{port}",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        LOG_LEVEL="INFO",
        CELERY_BROKER_URL="memory://",
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    server = ServiceProcess(
        "runserver",
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
        env,
        tmp_path,
    )
    try:
        wait_until(
            lambda: "Quit the server" in server.log() or server.proc.poll() is not None, timeout=60, message="runserver"
        )
        _token, secret = _buyer_visits(f"http://127.0.0.1:{port}", product)
        wait_until(lambda: server.log().count("/order/[redacted]/") >= 8, timeout=20, message="the request log lines")
    except Exception:
        print(server.log()[-4000:])  # noqa: T201 - the server log, shown with the failure
        raise
    finally:
        server.stop()

    log = server.log()
    assert '"GET /order/[redacted]/status/ HTTP/1.1" 200' in log
    assert "Not Found: /order/[redacted]/" in log
    for value in secret:
        assert value not in log


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /order/Ab-_9/pay/ HTTP/1.1" 200', '"GET /order/[redacted]/pay/ HTTP/1.1" 200'),
        ('"GET /order/Ab9 HTTP/1.1" 301', '"GET /order/[redacted] HTTP/1.1" 301'),
        ("GET /S/2026.sig/", "GET /S/[redacted]/"),
        ("/ORDER%2FAb9%2Fstatus", "/ORDER%2F[redacted]%2Fstatus"),
        ("/order//Ab9/", "/order//[redacted]/"),
        ("Not Found: /order/ Ab9/", "Not Found: /order/[redacted]/"),
        ('"https://shop.example/order/Ab9/?x=1"', '"https://shop.example/order/[redacted]/?x=1"'),
        ("/admin/shop/order/12/change/", "/admin/shop/order/12/change/"),
        ("/static/s.css /orders/1/", "/static/s.css /orders/1/"),
    ],
    ids=[
        "request-line",
        "no-slash",
        "short-link-uppercase",
        "encoded-slashes",
        "double-slash",
        "decoded-space",
        "referer",
        "admin-order-id",
        "not-a-secret-prefix",
    ],
)
def test_secret_paths_redact(line, expected):
    assert secret_paths_redact(line) == expected


def test_secret_path_filter_redacts_arguments_of_a_record():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/order/Ab9/",), None)

    SecretPathFilter().filter(record)

    assert record.getMessage() == "Not Found: /order/[redacted]/"
