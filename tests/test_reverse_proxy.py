"""The production reverse proxy: Debian's real ``caddy`` running the repo's Caddyfile in front of
gunicorn (tests.support.processes.shop_start) on loopback, as docker-compose runs the caddy:2 image.

The buyer, the proxy and a direct caller use different loopback source addresses (127.0.0.3,
127.0.0.1, 127.0.0.2), so the shop's idea of "the client" can be checked for each."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from shop.models import Order
from tests.support.environment import REQUIRE_SERVICES
from tests.support.factories import ProductFactory, stock_product
from tests.support.processes import REDIS_URL, ServiceProcess, free_port, shop_start
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CADDY = shutil.which("caddy") or "/usr/bin/caddy"
CADDYFILE = Path(__file__).parent.parent / "Caddyfile"


class _FromAddress(HTTPAdapter):
    """Connect from a chosen loopback address, as a buyer on another machine would."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def _client(source: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress(source))
    return session


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@pytest.fixture
def behind_caddy(tmp_path):
    if not Path(CADDY).is_file():
        missing = "needs caddy (apt-get install caddy; .ci/run installs it)"
        pytest.fail(missing) if REQUIRE_SERVICES else pytest.skip(missing)
    media = tmp_path / "media"
    (media / "products").mkdir(parents=True)
    (media / "products" / "card.txt").write_text("an uploaded file")
    shop = shop_start(
        tmp_path,
        beat=False,
        TRUSTED_PROXIES="127.0.0.1/32",
        TRUST_X_FORWARDED_PROTO="true",
        CACHE_URL=REDIS_URL.replace("redis://", "rediscache://"),  # limits shared by the gunicorn workers
        ORDER_LOOKUP_RATE="3/m",
        MEDIA_ROOT=str(media),
    )
    port = free_port()
    caddy_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
        "SITE_DOMAIN": f"http://127.0.0.1:{port}",
        "CADDY_BIND": "127.0.0.1",
        "UPSTREAM": shop.url.removeprefix("http://"),
        "MEDIA_DIR": str(media),
    }
    caddy = ServiceProcess(
        "caddy", [CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"], caddy_env, tmp_path
    )
    try:
        proxy_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(proxy_url), timeout=30, message="caddy to answer")
        yield shop, proxy_url, caddy
    finally:
        caddy.stop()
        shop.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


def _checkout(session: requests.Session, base: str, product, contact: str, **headers) -> Order:
    page = session.get(f"{base}/p/{product.slug}/", headers=headers)
    response = session.post(
        f"{base}/p/{product.slug}/",
        data={"csrfmiddlewaretoken": _csrf(page.text), "quantity": 1, "contact": contact, "query_password": "pw1234"},
        headers=headers,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return Order.objects.get(contact=contact)


def _lookup(session: requests.Session, base: str, **headers) -> int:
    page = session.get(f"{base}/lookup/", headers=headers)
    return session.post(
        f"{base}/lookup/",
        data={"csrfmiddlewaretoken": _csrf(page.text), "number": "nobody@example.com", "query_password": "guess"},
        headers=headers,
    ).status_code


def test_through_caddy_the_shop_sees_the_real_client_and_ignores_spoofed_headers(behind_caddy):
    shop, proxy_url, caddy = behind_caddy
    product = ProductFactory(name="Steam ¥50")
    stock_product(product, 3)
    buyer = _client("127.0.0.3")

    through_proxy = _checkout(buyer, proxy_url, product, "via-proxy@example.com", **{"X-Forwarded-For": "6.6.6.6"})
    direct = _checkout(_client("127.0.0.2"), shop.url, product, "direct@example.com", **{"X-Forwarded-For": "6.6.6.6"})

    assert through_proxy.client_ip == "127.0.0.3"  # the proxy's X-Forwarded-For, not the buyer's own
    assert direct.client_ip == "127.0.0.2"  # not through the proxy: the header is ignored
    order_page = buyer.get(f"{proxy_url}/order/{through_proxy.access_token}/")
    assert order_page.status_code == 200 and "Steam ¥50" in order_page.text
    assert buyer.get(f"{proxy_url}/static/shop/site.css").status_code == 200
    media = buyer.get(f"{proxy_url}/media/products/card.txt")
    assert media.text == "an uploaded file" and media.headers["X-Content-Type-Options"] == "nosniff"
    assert buyer.get(f"{proxy_url}/media/").status_code == 404  # no directory listing
    assert through_proxy.access_token not in caddy.log()  # no access log with the secret path


def test_through_caddy_rate_limits_key_on_each_real_client(behind_caddy):
    _shop, proxy_url, _caddy = behind_caddy
    guesser = _client("127.0.0.3")

    answers = [_lookup(guesser, proxy_url, **{"X-Forwarded-For": f"6.6.6.{n}"}) for n in range(4)]

    assert answers == [200, 200, 200, 429]  # a new spoofed address per try does not help
    assert _lookup(_client("127.0.0.4"), proxy_url) == 200  # another buyer behind the same proxy is not blocked
