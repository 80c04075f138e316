from __future__ import annotations

import pytest
from django.db import connection

from kameng.celery import app as celery_app
from tests.support.environment import LIVE_SHOP_CACHE_URL, REDIS_URL, REQUIRE_SERVICES
from tests.support.platforms import SANDBOX_SECRET


def _missing_service(node) -> str | None:
    if node.get_closest_marker("browser"):
        from tests.support.browser import browser_missing

        missing = browser_missing()
        if missing:
            return missing
    needs_postgres = any(node.get_closest_marker(name) for name in ("postgres", "redis", "browser"))
    if needs_postgres and connection.vendor != "postgresql":
        return "needs PostgreSQL (set DATABASE_URL or start it on 127.0.0.1:5432)"
    if (node.get_closest_marker("redis") or node.get_closest_marker("browser")) and not REDIS_URL:
        return "needs Redis on 127.0.0.1:6379"
    return None


@pytest.fixture(autouse=True)
def _services_required(request):
    reason = _missing_service(request.node)
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(f"KAMENG_REQUIRE_SERVICES=1: {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _shop_settings(settings, request):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    settings.PAYMENTS_SANDBOX_SECRET = SANDBOX_SECRET
    settings.SITE_URL = "http://testserver"
    settings.DELIVERY_RETRY_BASE_SECONDS = 30
    settings.DELIVERY_MAX_TRIES = 3
    settings.SECURE_SSL_REDIRECT = False
    settings.CATALOG_CACHE_SECONDS = 0  # tests of the cached catalog turn it on
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": request.node.nodeid}
    }
    from delivery.services import delivery_rules_forget

    delivery_rules_forget()  # a memo from another test's (rolled back) rules must not leak in
    # Tests without a real worker run tasks in-process when their transaction commits.
    eager = request.node.get_closest_marker("redis") is None and request.node.get_closest_marker("browser") is None
    celery_app.conf.task_always_eager = eager
    celery_app.conf.task_eager_propagates = eager
    # In-process tasks: the payment's commit runs the delivery. With a real worker, paid orders
    # reach it the production way (PostgreSQL NOTIFY to its listener, delivery/dispatch.py).
    settings.DELIVERY_DISPATCH = "broker" if eager else "listen"
    if not eager and celery_app.conf.broker_url != REDIS_URL:
        pytest.fail(f"set CELERY_BROKER_URL={REDIS_URL} for the worker tests (make test does)")
    yield


@pytest.fixture(scope="session")
def _media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _media_root(settings, _media_dir):
    """Uploads go to a temporary folder, never to the working tree's var/media."""
    settings.MEDIA_ROOT = str(_media_dir)


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (task sends) when the block ends, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def alipay(settings, monkeypatch):
    """The Alipay simulator, configured in the shop; the SDK's HTTP POST goes to it."""
    from tests.support.payment_platforms import AlipayPlatform

    platform = AlipayPlatform()
    platform.apply(settings)
    monkeypatch.setattr("alipay.aop.api.DefaultAlipayClient.do_post", platform.transport)
    return platform


@pytest.fixture
def wechat(settings):
    """The WeChat Pay simulator (public-key mode) serving its API on loopback."""
    from tests.support.payment_platforms import WechatPayPlatform

    platform = WechatPayPlatform()
    platform.apply(settings)
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def live_shop(django_db_setup, django_db_blocker, tmp_path_factory):
    """gunicorn + a Celery worker + beat on the test database, shared by a module's browser tests
    (their data is committed: mark them ``django_db(transaction=True)``). Module-scoped: its worker
    would otherwise go on delivering other modules' orders behind their backs. Tests that need other settings
    start their own with ``tests.support.processes.shop_start``."""
    from tests.support.browser import browser_missing
    from tests.support.processes import shop_start

    if browser_missing() or connection.vendor != "postgresql" or not REDIS_URL:
        pytest.skip("the live shop needs PostgreSQL, Redis and Chromium")  # the test's own check fails first
    with django_db_blocker.unblock():
        shop = shop_start(tmp_path_factory.mktemp("live-shop"), CACHE_URL=LIVE_SHOP_CACHE_URL)
    yield shop
    shop.stop()


@pytest.fixture
def live_cache(settings, live_shop):
    """This test shares the live shop's cache, so what it saves (shop settings) reaches the shop's
    web workers at once, and forgotten afterwards. (Not ``cache.clear()``: that would empty
    the Redis database the broker uses too.)"""
    import environ
    from django.core.cache import cache

    from shop.selectors import SHOP_SETTINGS_CACHE_KEY

    settings.CACHES = {"default": environ.Env.cache_url_config(LIVE_SHOP_CACHE_URL)}
    cache.delete(SHOP_SETTINGS_CACHE_KEY)
    yield
    cache.delete(SHOP_SETTINGS_CACHE_KEY)


@pytest.fixture(params=["phone", "desktop"])
def viewport(request):
    from tests.support.browser import VIEWPORTS

    return VIEWPORTS[request.param]


@pytest.fixture
def browser(viewport):
    """Headless Chromium at phone (390x844) and desktop (1366x900) width, asking for Simplified
    Chinese; ``browser_in`` opens more in other languages."""
    from tests.support.browser import chromium_quit, chromium_start

    driver = chromium_start(viewport)
    yield driver
    chromium_quit(driver)


@pytest.fixture
def browser_in(viewport):
    """``browser_in("en")``: another headless Chromium at the same width asking for that language."""
    from tests.support.browser import chromium_quit, chromium_start

    drivers = []

    def start(language: str):
        driver = chromium_start(viewport, language=language)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        chromium_quit(driver)


@pytest.fixture
def scripted_smtp(settings):
    """An email backend whose sends fail as ``tests.support.email_backends.FAILURES`` scripts them."""
    from tests.support import email_backends

    settings.EMAIL_BACKEND = "tests.support.email_backends.ScriptedSMTPBackend"
    yield email_backends
    email_backends.FAILURES.clear()


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback (aiosmtpd); yields its handler with the received messages."""
    from tests.support.smtp_server import smtp_server_start

    controller, handler = smtp_server_start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield handler
    controller.stop()
