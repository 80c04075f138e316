"""The pay step in a real browser, with Alipay and WeChat Pay configured: the pay form's POST is
answered with a redirect to the platform, and the storefront's CSP (form-action) must let the
browser follow it and every redirect of the platform's own; on desktop the QR modes show the code.

The platforms are loopback stand-ins: Alipay's gateway (ALIPAY_SERVER_URL) is a plain HTTP server
on port 80 of a loopback address (the SDK refuses a port in that URL); it checks the shop's RSA2
signature with the simulator's keys and answers as Alipay does, with a redirect to its cashier.
The cashier hosts and WeChat's H5 host (https://wx.tenpay.com) are sent to a loopback TLS server
by Chromium's host-resolver rules.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import secrets
import ssl
import threading
import types
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import DESKTOP, PHONE, chromium_quit, chromium_start, console_errors, screenshot
from tests.support.factories import OrderFactory, ProductFactory, stock_product
from tests.support.payment_platforms import AlipayPlatform, WechatPayPlatform

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CASHIER_HOSTS = ("excashier.alipay.com", "mclient.alipay.com", "wx.tenpay.com")


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(server: http.server.HTTPServer) -> http.server.HTTPServer:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


class AlipayGatewayPage:
    """ALIPAY_SERVER_URL on loopback: GET (page/wap pay) records the signed request and redirects to
    the cashier as Alipay does; POST (precreate, query) is the simulator's API."""

    def __init__(self, platform: AlipayPlatform) -> None:
        self.platform = platform
        self.visits: list[dict] = []
        # A loopback address of its own, so port 80 is free whatever else runs on this machine.
        self.host = str(ipaddress.ip_address("127.0.0.0") + secrets.randbelow(250 * 256 * 256) + 256)
        page = self

        class Handler(_QuietHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                page.platform._handle("GET", parts.path, dict(parse_qsl(parts.query)), b"", {})
                request = page.platform.requests[-1]
                page.visits.append(request)
                cashier = (
                    "mclient.alipay.com" if request["method"] == "alipay.trade.wap.pay" else "excashier.alipay.com"
                )
                self.send_response(302)
                self.send_header(
                    "Location", f"https://{cashier}/cashier?out_trade_no={request['biz'].get('out_trade_no', '')}"
                )
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = page.platform._handle(
                    "POST", parts.path, dict(parse_qsl(parts.query)), body, {}
                )
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        self.server = _serve(http.server.ThreadingHTTPServer((self.host, 80), Handler))
        self.url = f"http://{self.host}/gateway.do"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CashierPages:
    """The platforms' cashier pages (any host, any path) over TLS on loopback; records each visit."""

    def __init__(self, tmp_path) -> None:
        self.visits: list[str] = []
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cashier stand-in")])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host) for host in CASHIER_HOSTS]), critical=False)
            .sign(key, hashes.SHA256())
        )
        (tmp_path / "cashier.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            + certificate.public_bytes(serialization.Encoding.PEM)
        )
        pages = self

        class Handler(_QuietHandler):
            def do_GET(self):
                if self.path != "/favicon.ico":
                    pages.visits.append(f"https://{self.headers['Host']}{self.path}")
                body = b"<!doctype html><title>cashier</title><p>cashier" if self.path != "/favicon.ico" else b""
                self.send_response(200 if body else 204)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cashier.pem")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server = _serve(server)
        self.port = server.server_address[1]

    def browser_flags(self) -> tuple[str, ...]:
        rules = ",".join(f"MAP {host} 127.0.0.1:{self.port}" for host in CASHIER_HOSTS)
        return (f"--host-resolver-rules={rules}", "--ignore-certificate-errors")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _platform_env(platform, **overrides) -> dict[str, str]:
    values = types.SimpleNamespace()
    platform.apply(values, **overrides)
    return {name: str(value) for name, value in vars(values).items()}


@pytest.fixture(scope="module")
def platforms(tmp_path_factory):
    alipay = AlipayPlatform()
    try:
        gateway = AlipayGatewayPage(alipay)
    except PermissionError:
        pytest.skip("the Alipay stand-in needs to listen on port 80 (run as root, as .ci/run does)")
    wechat = WechatPayPlatform()
    cashier = CashierPages(tmp_path_factory.mktemp("cashier"))
    yield types.SimpleNamespace(alipay=alipay, wechat=wechat, gateway=gateway, cashier=cashier)
    for server in (gateway, cashier, wechat):
        server.close()


def _shop(django_db_blocker, tmp_path_factory, platforms, *, alipay_mode: str):
    from tests.support.processes import shop_start

    env = {
        **_platform_env(platforms.alipay, ALIPAY_SERVER_URL=platforms.gateway.url, ALIPAY_PAY_MODE=alipay_mode),
        **_platform_env(platforms.wechat),
    }
    with django_db_blocker.unblock():
        return shop_start(tmp_path_factory.mktemp(f"shop-{alipay_mode}"), beat=False, web_workers=1, **env)


@pytest.fixture(scope="module")
def shop_auto(live_shop_requirements, django_db_blocker, tmp_path_factory, platforms):
    shop = _shop(django_db_blocker, tmp_path_factory, platforms, alipay_mode="auto")
    yield shop
    shop.stop()


@pytest.fixture(scope="module")
def shop_qr(live_shop_requirements, django_db_blocker, tmp_path_factory, platforms):
    shop = _shop(django_db_blocker, tmp_path_factory, platforms, alipay_mode="qr")
    yield shop
    shop.stop()


@pytest.fixture(scope="module")
def live_shop_requirements(django_db_setup):
    from django.db import connection

    from tests.support.browser import browser_missing
    from tests.support.environment import REDIS_URL

    if browser_missing() or connection.vendor != "postgresql" or not REDIS_URL:
        pytest.skip("needs PostgreSQL, Redis and Chromium")


@pytest.fixture(params=["phone", "desktop"])
def buyer(request, platforms):
    driver = chromium_start(PHONE if request.param == "phone" else DESKTOP, flags=platforms.cashier.browser_flags())
    yield driver
    chromium_quit(driver)


def _pending_order():
    product = ProductFactory(name="Steam 充值卡 ¥50")
    stock_product(product, 1)
    return OrderFactory(product=product)


def _choose(driver, shop, order, gateway: str) -> None:
    driver.get(f"{shop.url}/order/{order.access_token}/pay/")
    driver.find_element(By.CSS_SELECTOR, f'button[name="gateway"][value="{gateway}"]').click()


def _wait_for_url(driver, prefix: str) -> None:
    try:
        WebDriverWait(driver, 15).until(lambda d: d.current_url.startswith(prefix))
    except TimeoutException:
        pytest.fail(f"the browser stayed at {driver.current_url}, console: {console_errors(driver)}")


def _wait_for_qr(driver) -> None:
    # (an element read while the QR page replaces the pay page goes stale: read again)
    WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".qr svg")
    )


def _csp_violations(driver) -> list[str]:
    return [e for e in console_errors(driver) if "Content Security Policy" in e or "form-action" in e]


def test_buyer_choosing_alipay_reaches_alipay_and_its_cashier(shop_auto, platforms, buyer):
    order = _pending_order()
    visits_before = len(platforms.gateway.visits)

    _choose(buyer, shop_auto, order, "alipay")

    cashier = "mclient.alipay.com" if buyer.viewport.mobile else "excashier.alipay.com"
    _wait_for_url(buyer, f"https://{cashier}/cashier")
    assert _csp_violations(buyer) == []
    visit = platforms.gateway.visits[visits_before]
    assert visit["method"] == ("alipay.trade.wap.pay" if buyer.viewport.mobile else "alipay.trade.page.pay")
    assert visit["signature_ok"] and visit["biz"]["out_trade_no"].startswith(order.number)
    assert buyer.current_url.endswith(visit["biz"]["out_trade_no"])


def test_buyer_choosing_wechat_pay_on_a_phone_reaches_h5_and_on_desktop_sees_the_qr_code(shop_auto, platforms, buyer):
    order = _pending_order()

    _choose(buyer, shop_auto, order, "wechatpay")

    if buyer.viewport.mobile:
        _wait_for_url(buyer, "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb")
    else:
        _wait_for_qr(buyer)
        assert f"/order/{order.access_token}/pay/" in buyer.current_url
        screenshot(buyer, "pay-wechat-qr")
    assert _csp_violations(buyer) == []


@pytest.fixture
def desktop_buyer(platforms):
    driver = chromium_start(DESKTOP, flags=platforms.cashier.browser_flags())
    yield driver
    chromium_quit(driver)


def test_desktop_buyer_sees_the_alipay_qr_code_in_qr_mode(shop_qr, platforms, desktop_buyer):
    buyer = desktop_buyer
    order = _pending_order()

    _choose(buyer, shop_qr, order, "alipay")

    _wait_for_qr(buyer)
    assert platforms.alipay.requests[-1]["method"] == "alipay.trade.precreate"
    assert platforms.alipay.requests[-1]["signature_ok"]
    screenshot(buyer, "pay-alipay-qr")
    # (the favicon arrives with the storefront's own work)
    assert [e for e in console_errors(buyer) if "favicon.ico" not in e] == []
