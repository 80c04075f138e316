"""Notification endpoints and the sandbox pay page. Views verify nothing themselves: gateways do."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from csp.decorators import csp_exempt
from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from payments.gateways.sandbox import SandboxGateway, sandbox_pay_page_signature
from payments.models import Payment, PaymentState
from payments.registry import GatewayNotFound, gateway_get
from payments.services import notification_receive
from shop.models import OrderStatus


@csrf_exempt  # platforms cannot send a CSRF token; the gateway verifies the signature instead
@require_POST
# The platforms read an acknowledgement, not a document (payments/csp.py). The ignore: django-csp
# types a view as taking the request alone, not URL arguments as well.
@csp_exempt()  # type: ignore[arg-type]
def notify(request: HttpRequest, gateway: str) -> HttpResponse:
    try:
        # staff_test: the sandbox's notifications are accepted for test orders even while it is
        # off for the public; the payment service refuses them for any other order.
        found = gateway_get(gateway, staff_test=True)
    except GatewayNotFound:
        raise Http404("unknown payment gateway") from None
    outcome = notification_receive(
        gateway=found, body=request.body, headers=_HeadersOnRead(request), form=_form_fields(request)
    )
    ack = found.notification_ack(accepted=outcome.accepted, reason=outcome.reason)
    return HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)


class _HeadersOnRead(Mapping):
    """The request's headers (case-insensitive), built on a gateway's first read: Alipay's
    notification is all in its form, and building ``request.headers`` from every META entry
    on every notification is work nobody reads (bench/notify_cost.py counts it)."""

    def __init__(self, request: HttpRequest) -> None:
        self._request = request

    def __getitem__(self, name: str) -> str:
        return self._request.headers[name]

    def __iter__(self):
        return iter(self._request.headers)

    def __len__(self) -> int:
        return len(self._request.headers)


def _form_fields(request: HttpRequest) -> Mapping[str, str]:
    """A notification's form fields, the last value of a repeated name winning as in
    ``request.POST``. The urlencoded form the platforms post is parsed straight from the body:
    the QueryDict that ``request.POST`` builds for it is a large share of a notification's
    Python time (bench/notify.py). Decoded as Django decodes forms; other bodies go to
    ``request.POST``."""
    if request.content_type != "application/x-www-form-urlencoded":
        return request.POST
    encoding = request.encoding or settings.DEFAULT_CHARSET
    try:
        text = request.body.decode(encoding)
    except UnicodeDecodeError:
        text = request.body.decode("iso-8859-1")
    try:
        fields = parse_qsl(
            text, keep_blank_values=True, encoding=encoding, max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        )
    except ValueError:
        raise TooManyFieldsSent("too many fields in a payment notification") from None
    return dict(fields)


@never_cache
@require_GET
def sandbox_pay(request: HttpRequest, out_trade_no: str) -> HttpResponse:
    """The sandbox's "platform" page: a signed paid notification to post. Opens only with the
    signature the shop put in its URL (``SandboxGateway.create_payment``), so the page, whose
    link back holds the order's access token, shows nothing to whoever knows an out_trade_no."""
    try:
        gateway = gateway_get("sandbox", staff_test=True)
    except GatewayNotFound:
        raise Http404("the sandbox gateway is disabled") from None
    if not isinstance(gateway, SandboxGateway):
        raise Http404("PAYMENT_GATEWAYS names another class as the sandbox")
    return_url = request.GET.get("return_url", "")
    expected = sandbox_pay_page_signature(out_trade_no=out_trade_no, return_url=return_url)
    if not return_url or not constant_time_compare(expected, request.GET.get("sign", "")):
        raise Http404("no such payment")
    payment = get_object_or_404(
        Payment.objects.select_related("order__product"), out_trade_no=out_trade_no, gateway="sandbox"
    )
    if not gateway.is_enabled() and not payment.order.is_test:
        raise Http404("the sandbox gateway is disabled")
    payable = payment.state == PaymentState.CREATED and payment.order.status == OrderStatus.PENDING
    context = {
        "payment": payment,
        "order": payment.order,
        "return_url": return_url,
        "payable": payable,
        "fields": gateway.notification_fields(out_trade_no=payment.out_trade_no, amount=payment.amount)
        if payable
        else {},
    }
    response = render(request, "payments/sandbox_pay.html", context)
    response["Referrer-Policy"] = "same-origin"  # its URL holds the return URL, token and all
    return response
