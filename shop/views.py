"""Storefront views: thin; every rule lives in services."""

from __future__ import annotations

import logging
import re

import qrcode
from django.conf import settings
from django.contrib import messages
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.crypto import constant_time_compare
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited
from qrcode.image.svg import SvgPathImage

from cardpool.selectors import order_keys
from delivery.services import ResendRefused, delivery_resend, order_short_token
from payments.gateways.base import GatewayError
from payments.registry import GatewayNotFound, gateway_get, gateways_enabled
from payments.services import PaymentRefused, order_cancel_by_buyer, payment_start
from shop import selectors
from shop.forms import CheckoutForm, OrderLookupForm
from shop.models import Order, OrderStatus
from shop.services import OrderRejected, order_create, order_lookup

logger = logging.getLogger(__name__)


MOBILE_UA = re.compile(r"Mobile|Android|iPhone|iPad|MicroMessenger|AlipayClient", re.I)


def is_mobile_browser(request: HttpRequest) -> bool:
    return bool(MOBILE_UA.search(request.headers.get("User-Agent", "")))


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get(settings.RATELIMIT_IP_META_KEY or "REMOTE_ADDR") or None


@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/catalog.html", {"categories": selectors.catalog_categories()})


@require_http_methods(["GET", "POST"])
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = selectors.product_for_sale(slug=slug)
    if product is None:
        raise Http404("no such product")
    form = CheckoutForm(request.POST or None, product=product)
    if request.method == "POST" and form.is_valid():
        try:
            order = order_create(
                product=product,
                quantity=form.cleaned_data["quantity"],
                contact=form.cleaned_data["contact"],
                query_password=form.cleaned_data["query_password"],
                client_ip=client_ip(request),
            )
        except OrderRejected as exc:
            form.add_error(None, exc)
        else:
            return redirect("shop:order-pay", token=order.access_token)
    return render(request, "shop/product.html", {"product": product, "form": form})


def _order_by_token(token: str) -> Order:
    # By the hash of the whole token through a unique index: a token that is almost right costs
    # the same as any other, so timing gives nothing away about its prefix.
    found = selectors.order_by_access_token(token=token)
    if found is None:
        raise Http404("no such order")
    return found


@never_cache
@require_http_methods(["GET", "POST"])
def order_pay(request: HttpRequest, token: str) -> HttpResponse:
    order = _order_by_token(token)
    if order.status != OrderStatus.PENDING:
        return redirect("shop:order", token=token)
    if request.method == "POST":
        try:
            gateway = gateway_get(request.POST.get("gateway", ""), staff_test=request.user.is_staff)
            payment, action = payment_start(
                order=order, gateway=gateway, mobile=is_mobile_browser(request), client_ip=client_ip(request) or ""
            )
        except GatewayNotFound:
            messages.error(request, _("Choose a payment method."))
        except PaymentRefused:
            return redirect("shop:order", token=token)
        except GatewayError:
            logger.exception("could not start a %s payment for order %s", request.POST.get("gateway"), order.number)
            messages.error(request, _("The payment platform did not answer. Please try again in a moment."))
        else:
            if action.redirect_url:
                return redirect(action.redirect_url)
            return redirect("shop:order-pay-qr", token=token, out_trade_no=payment.out_trade_no)
    return render(
        request, "shop/order_pay.html", {"order": order, "gateways": gateways_enabled(staff_test=request.user.is_staff)}
    )


@never_cache
@require_GET
def order_pay_qr(request: HttpRequest, token: str, out_trade_no: str) -> HttpResponse:
    """The QR code to scan with Alipay (当面付) or WeChat (Native pay); polls until paid."""
    order = _order_by_token(token)
    payment = get_object_or_404(order.payments, out_trade_no=out_trade_no)
    if order.status != OrderStatus.PENDING or not payment.qr_content:
        return redirect("shop:order", token=token)
    image = qrcode.make(payment.qr_content, image_factory=SvgPathImage, box_size=8, border=2)
    return render(
        request,
        "shop/order_pay_qr.html",
        # The SVG is drawn by us from the platform's code: paths only, no text from outside.
        {"order": order, "payment": payment, "qr_svg": mark_safe(image.to_string(encoding="unicode"))},
    )


@never_cache
@require_GET
def order_detail(request: HttpRequest, token: str) -> HttpResponse:
    order = _order_by_token(token)
    keys = order_keys(order=order)
    response = render(
        request,
        "shop/order.html",
        {"order": order, "keys": keys, "secrets": [secret for secret, _expires in keys], "events": selectors.order_events(order=order)},
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def order_short_link(request: HttpRequest, token: str) -> HttpResponse:
    """The short signed link an SMS carries: opens the order page, nothing else."""
    number, _dot, signature = token.partition(".")
    order = get_object_or_404(Order, number=number)
    if not constant_time_compare(token, order_short_token(order=order)):
        raise Http404("bad link")
    return redirect("shop:order", token=order.access_token)


@require_POST
def order_cancel_view(request: HttpRequest, token: str) -> HttpResponse:
    order = _order_by_token(token)
    if order_cancel_by_buyer(order_id=order.pk):
        messages.info(request, _("The order was cancelled."))
    return redirect("shop:order", token=token)


@require_POST
def order_resend(request: HttpRequest, token: str) -> HttpResponse:
    """Buyer self-service: have the delivery email sent again (limited per hour)."""
    order = _order_by_token(token)
    try:
        delivery_resend(order_id=order.pk)
    except ResendRefused as exc:
        reason = str(exc)
        if reason == "limit reached":
            messages.error(request, _("The keys were sent again 3 times in the last hour. Please try again later, or copy them from this page."))
        elif reason == "already on its way":
            messages.info(request, _("The message is already on its way."))
        else:
            messages.error(request, _("There is nothing to send yet."))
    else:
        messages.success(request, _("The message is on its way to %(contact)s.") % {"contact": order.contact})
    return redirect("shop:order", token=token)


@never_cache
@require_GET
def order_status(request: HttpRequest, token: str) -> JsonResponse:
    """Polled by the order page. Carries no keys: the page reloads to show them."""
    order = _order_by_token(token)
    return JsonResponse(
        {
            "status": order.status,
            "status_display": order.get_status_display(),
            "has_keys": order.card_keys.exists(),
        }
    )


@never_cache
@require_http_methods(["GET", "POST"])
def order_lookup_view(request: HttpRequest) -> HttpResponse:
    form = OrderLookupForm(request.POST or None)
    limited = False
    if request.method == "POST":
        limited = is_ratelimited(
            request, group="order-lookup", key="ip", rate=settings.ORDER_LOOKUP_RATE, method="POST", increment=True
        )
        if limited:
            form.is_valid()
            form.add_error(None, _("Too many lookups from your network. Please wait a few minutes and try again."))
        elif form.is_valid():
            order = order_lookup(number=form.cleaned_data["number"], password=form.cleaned_data["query_password"])
            if order is not None:
                return redirect("shop:order", token=order.access_token)
            form.add_error(None, _("No order matches this number and query password."))
    return render(request, "shop/lookup.html", {"form": form}, status=429 if limited else 200)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness with one database round trip (compose's health check; the bare-view baseline of
    bench/notify.py)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
