"""Storefront views: thin; every rule lives in services."""

from __future__ import annotations

import logging
import re
import time

import qrcode
from csp.decorators import csp_exempt
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.safestring import mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited
from qrcode.image.svg import SvgPathImage

from cardpool.selectors import order_keys
from delivery.messages import ResendRefused, delivery_resend, order_short_token
from kameng.client_ip import request_client_ip
from payments.gateways.base import GatewayError
from payments.registry import GatewayNotFound, gateway_get, gateways_enabled
from payments.services import (
    PaymentInProgress,
    PaymentRefused,
    PaymentRefusedSoldOut,
    order_cancel_by_buyer,
    payment_start,
)
from shop import selectors
from shop.browser_orders import browser_order_ids, browser_orders_remember
from shop.forms import CheckoutForm, OrderLookupForm
from shop.fulfilment import fulfilment
from shop.models import Order, OrderStatus
from shop.services import OrderRejected, order_create, order_lookup, order_lookup_digests

logger = logging.getLogger(__name__)


MOBILE_UA = re.compile(r"Mobile|Android|iPhone|iPad|MicroMessenger|AlipayClient", re.I)


def is_mobile_browser(request: HttpRequest) -> bool:
    return bool(MOBILE_UA.search(request.headers.get("User-Agent", "")))


def _rate_limited(request: HttpRequest, *, group: str, rate: str, key: str | None = None) -> bool:
    """Count this request against ``group`` (cache-backed, django-ratelimit) and say whether it is
    over ``rate``: per client IP (kameng.client_ip), or per ``key`` (a contact, an order)."""
    return is_ratelimited(
        request,
        group=group,
        key="ip" if key is None else (lambda _group, _request: key),
        rate=rate,
        method=ALL,
        increment=True,
    )


@require_GET
def catalog(request: HttpRequest, category: str | None = None) -> HttpResponse:
    """The catalog, all categories or (``/c/<slug>/``) one; the category chips list them all.

    Its body is the same for every visitor of a language, so it is rendered at most once per
    CATALOG_CACHE_SECONDS: rendering fifty product cards costs more than the stock counts behind
    them. The stock a catalog shows may thus lag by that long; the product page and checkout,
    which decide what can be bought, count it afresh."""
    key = f"shop:catalog:v1:{get_language()}:{category or ''}"
    body = cache.get(key) if settings.CATALOG_CACHE_SECONDS else None
    if body is None:
        categories = selectors.catalog_categories()
        shown = categories
        if category is not None:
            shown = [c for c in categories if c.slug == category]
            if not shown:
                raise Http404("no such category")
        body = render_to_string(
            "shop/catalog_products.html",
            {"categories": categories, "shown_categories": shown, "current_category": category},
        )
        if settings.CATALOG_CACHE_SECONDS:
            cache.set(key, body, timeout=settings.CATALOG_CACHE_SECONDS)
    # The body holds only our own rendering of the catalog (autoescaped when it was rendered).
    catalog_body = mark_safe(body)  # noqa: S308 - our own template output, escaped when rendered
    return render(request, "shop/catalog.html", {"catalog_body": catalog_body})


FAVICON_DEFAULT = "shop/favicon.ico"


@require_GET
def favicon(request: HttpRequest) -> HttpResponseBase:
    """``/favicon.ico``: the operator's favicon (a PNG drawn by shop.images), else the default."""
    configured = selectors.shop_settings().favicon
    if configured:
        try:
            response = FileResponse(configured.storage.open(configured.name, "rb"), content_type="image/png")
        except OSError:  # missing from the media folder, or unreadable
            logger.warning("the configured favicon %s cannot be read from the media folder", configured.name)
        else:
            response["Cache-Control"] = "public, max-age=3600"
            return response
    return redirect(static(FAVICON_DEFAULT))


@require_http_methods(["GET", "POST"])
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = selectors.product_for_sale(slug=slug)
    if product is None:
        raise Http404("no such product")
    form = CheckoutForm(request.POST or None, product=product)
    limited = False
    if request.method == "POST":
        limited = _rate_limited(request, group="order-create-ip", rate=settings.ORDER_CREATE_RATE_IP)
        if form.is_valid() and not limited:
            limited = _rate_limited(
                request,
                group="order-create-contact",
                rate=settings.ORDER_CREATE_RATE_CONTACT,
                key=form.cleaned_data["contact"].lower(),
            )
        if limited:
            form.add_error(None, _("Too many orders in a short time. Please wait a few minutes and try again."))
        elif form.is_valid():
            try:
                order = order_create(
                    product=product,
                    quantity=form.cleaned_data["quantity"],
                    contact=form.cleaned_data["contact"],
                    query_password=form.cleaned_data["query_password"],
                    client_ip=request_client_ip(request),
                )
            except OrderRejected as exc:
                form.add_error(None, exc)
            else:
                return redirect("shop:order-pay", token=order.access_token)
    return render(request, "shop/product.html", {"product": product, "form": form}, status=429 if limited else 200)


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
    limited, sold_out = False, None
    if request.method == "POST":
        limited = _rate_limited(
            request, group="payment-start-ip", rate=settings.PAYMENT_START_RATE_IP
        ) or _rate_limited(
            request, group="payment-start-order", rate=settings.PAYMENT_START_RATE_ORDER, key=str(order.pk)
        )
    if limited:
        messages.error(
            request, _("Too many payment attempts in a short time. Please wait a few minutes and try again.")
        )
    elif request.method == "POST":
        try:
            gateway = gateway_get(request.POST.get("gateway", ""), staff_test=request.user.is_staff)
            payment, action = payment_start(
                order=order,
                gateway=gateway,
                mobile=is_mobile_browser(request),
                client_ip=request_client_ip(request) or "",
            )
        except GatewayNotFound:
            messages.error(request, _("Choose a payment method."))
        except PaymentRefusedSoldOut:
            sold_out = True  # the page below says so
        except PaymentRefused:
            return redirect("shop:order", token=token)
        except PaymentInProgress:
            messages.info(request, _("Your payment is being prepared. Please press Pay again in a moment."))
        except GatewayError:
            logger.exception("could not start a %s payment for order %s", request.POST.get("gateway"), order.number)
            messages.error(request, _("The payment platform did not answer. Please try again in a moment."))
        else:
            if action.redirect_url:
                return redirect(action.redirect_url)
            return redirect("shop:order-pay-qr", token=token, out_trade_no=payment.out_trade_no)
    if sold_out is None:
        # The same check payment_start makes, so a buyer sees it before choosing how to pay.
        sold_out = not fulfilment().units_available(product_id=order.product_id, quantity=order.quantity)
    response = render(
        request,
        "shop/order_pay.html",
        {
            "order": order,
            "sold_out": sold_out,
            "gateways": [] if sold_out else gateways_enabled(staff_test=request.user.is_staff),
        },
        status=429 if limited else 200,
    )
    browser_orders_remember(request=request, response=response, order=order)
    return response


@never_cache
@require_GET
def order_pay_qr(request: HttpRequest, token: str, out_trade_no: str) -> HttpResponse:
    """The QR code to scan with Alipay (当面付) or WeChat (Native pay); polls until paid."""
    order = _order_by_token(token)
    payment = get_object_or_404(order.payments, out_trade_no=out_trade_no)
    if order.status != OrderStatus.PENDING or not payment.qr_content:
        return redirect("shop:order", token=token)
    image = qrcode.make(payment.qr_content, image_factory=SvgPathImage, box_size=8, border=2)
    # The SVG is drawn by us from the platform's code: paths only, no text from outside.
    qr_svg = mark_safe(image.to_string(encoding="unicode"))  # noqa: S308 - paths drawn by qrcode
    return render(request, "shop/order_pay_qr.html", {"order": order, "payment": payment, "qr_svg": qr_svg})


@never_cache
@require_GET
def order_detail(request: HttpRequest, token: str) -> HttpResponse:
    order = _order_by_token(token)
    keys = order_keys(order=order)
    response = render(
        request,
        "shop/order.html",
        {
            "order": order,
            "keys": keys,
            "secrets": [secret for secret, _expires in keys],
            "events": selectors.order_events(order=order),
        },
    )
    response["Cache-Control"] = "no-store"
    # The URL holds the order's access token: no Referer may carry it to another site, but the
    # page's own forms (send again, language) must send their real Origin for CSRF to accept
    # them, which "no-referrer" prevents (Chromium sends "Origin: null"). SECURE_REFERRER_POLICY
    # gives every page this already; it is stated here because this page depends on it.
    response["Referrer-Policy"] = "same-origin"
    browser_orders_remember(request=request, response=response, order=order)
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
            messages.error(
                request,
                _(
                    "The keys were sent again %(count)d times in the last hour. "
                    "Please try again later, or copy them from this page."
                )
                % {"count": settings.DELIVERY_RESEND_PER_ORDER_PER_HOUR},
            )
        elif reason == "recipient limit reached":
            messages.error(
                request,
                _(
                    "We have sent several messages to %(contact)s in the last hour. "
                    "Please try again later, or copy the keys from this page."
                )
                % {"contact": order.contact},
            )
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


LOOKUP_SESSION_KEY = "shop.lookup"
LOOKUP_RESULTS_SECONDS = 30 * 60  # how long a contact lookup's list stays pageable
LOOKUP_PAGE_SIZE = 10


@never_cache
@require_http_methods(["GET", "POST"])
def order_lookup_view(request: HttpRequest) -> HttpResponse:
    """Find orders by number + query password (opens the order) or by contact + query password
    (lists that contact's orders with this password, newest first, paged through the session).
    Every miss gets the same answer; the page also lists the orders this browser opened."""
    form = OrderLookupForm(request.POST or None)
    limited = False
    if request.method == "POST":
        limited = _rate_limited(request, group="order-lookup", rate=settings.ORDER_LOOKUP_RATE)
        if limited:
            form.is_valid()
            form.add_error(None, _("Too many lookups from your network. Please wait a few minutes and try again."))
        elif form.is_valid() and form.cleaned_data["by"] == "number":
            order = order_lookup(number=form.cleaned_data["number"], password=form.cleaned_data["query_password"])
            if order is not None:
                return redirect("shop:order", token=order.access_token)
            form.add_error(None, _("No order matches these details and query password."))
        elif form.is_valid():
            contact = form.cleaned_data["number"]
            limited = _rate_limited(
                request, group="order-lookup-contact", rate=settings.ORDER_LOOKUP_RATE_CONTACT, key=contact
            )
            if limited:
                form.add_error(
                    None, _("Too many lookups for this email or mobile number. Please try again in an hour.")
                )
            else:
                digests = order_lookup_digests(contact=contact, password=form.cleaned_data["query_password"])
                if selectors.orders_by_lookup_digests(digests=digests).exists():
                    request.session[LOOKUP_SESSION_KEY] = {
                        "digests": list(digests),
                        "until": time.time() + LOOKUP_RESULTS_SECONDS,
                    }
                    return redirect(reverse("shop:lookup") + "?page=1")
                form.add_error(None, _("No order matches these details and query password."))
    found = None
    remembered = request.session.get(LOOKUP_SESSION_KEY) if request.method == "GET" and "page" in request.GET else None
    if isinstance(remembered, dict) and remembered.get("until", 0) > time.time():
        orders = selectors.orders_by_lookup_digests(digests=[str(d) for d in remembered.get("digests", [])])
        found = Paginator(orders, LOOKUP_PAGE_SIZE).get_page(request.GET.get("page"))
    browser_orders = selectors.orders_by_ids(order_ids=browser_order_ids(request))
    return render(
        request,
        "shop/lookup.html",
        {"form": form, "found": found, "browser_orders": browser_orders},
        status=429 if limited else 200,
    )


@csp_exempt()
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness with one database round trip (compose's health check; the bare-view baseline of
    bench/notify.py)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
