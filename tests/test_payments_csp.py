"""The storefront's Content-Security-Policy (django-csp, payments/csp.py): every directive of the
policy, and form-action widened to exactly the platforms the enabled gateways send buyers to."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.support.factories import OrderFactory

pytestmark = pytest.mark.django_db

STOREFRONT_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def _policy(client, url: str) -> dict[str, str]:
    header = client.get(url)["Content-Security-Policy"]
    directives = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return dict(directives)


def test_storefront_policy_keeps_every_directive_and_only_self_for_forms_with_the_sandbox_alone(client):
    order = OrderFactory()

    for url in ("/", reverse("shop:lookup"), reverse("shop:order-pay", args=[order.access_token])):
        policy = _policy(client, url)
        assert {name: policy[name] for name in STOREFRONT_DIRECTIVES} == STOREFRONT_DIRECTIVES
        assert policy["form-action"] == "'self'"


def test_alipay_page_and_wap_pay_admit_its_gateway_and_cashier_in_form_action(client, alipay):
    order = OrderFactory()

    policy = _policy(client, reverse("shop:order-pay", args=[order.access_token]))

    assert policy["form-action"] == "'self' https://openapi.alipay.test https://*.alipay.com"


def test_alipay_sandbox_server_admits_the_sandbox_cashier(client, alipay, settings):
    settings.ALIPAY_SERVER_URL = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"

    assert (
        _policy(client, "/")["form-action"] == "'self' https://openapi-sandbox.dl.alipaydev.com https://*.alipaydev.com"
    )


def test_alipay_qr_mode_sends_nobody_away(client, alipay, settings):
    settings.ALIPAY_PAY_MODE = "qr"

    assert _policy(client, "/")["form-action"] == "'self'"


def test_wechat_pay_admits_the_h5_host(client, wechat, alipay):
    assert (
        _policy(client, "/")["form-action"]
        == "'self' https://openapi.alipay.test https://*.alipay.com https://wx.tenpay.com"
    )


def test_admin_keeps_djangos_own_headers(admin_client, alipay):
    assert "Content-Security-Policy" not in admin_client.get(reverse("admin:index"))


def test_notification_acknowledgement_carries_no_policy(client):
    response = client.post(reverse("payments:notify", args=["sandbox"]), {"out_trade_no": "x"})

    assert response.status_code == 400 and "Content-Security-Policy" not in response
