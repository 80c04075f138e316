"""The storefront's Content-Security-Policy (django-csp), with ``form-action`` widened to the
payment platforms the enabled gateways send buyers to.

A form's ``form-action`` also governs every redirect that answers its submission, so the pay
form's POST, answered with a 302 to Alipay or WeChat Pay, needs those origins in the policy of
the page holding the form; each gateway declares them (``PaymentGateway.redirect_origins``).
The rest of the policy is ``CONTENT_SECURITY_POLICY`` in kameng/settings.py.
"""

from __future__ import annotations

from functools import cache

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

from payments.registry import gateways_enabled


@cache
def payment_redirect_origins() -> tuple[str, ...]:
    """The origins the enabled gateways' pay step navigates to, in registry order, once each.

    Computed once per process, not per response: every storefront response carries the policy,
    and settings do not change while serving; tests that change them clear it (below)."""
    origins: dict[str, None] = {}
    for gateway in gateways_enabled():
        origins.update(dict.fromkeys(gateway.redirect_origins()))
    return tuple(origins)


@receiver(setting_changed)
def _payment_redirect_origins_forget(**_kwargs) -> None:
    payment_redirect_origins.cache_clear()


class StorefrontCSPMiddleware(CSPMiddleware):
    """django-csp's middleware plus the payment platforms in ``form-action``. The admin
    (``EXCLUDE_URL_PREFIXES``) keeps Django's own behaviour: it still has inline scripts."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if getattr(response, "_csp_exempt", False):
            # Notification acknowledgements are exempt: they are no documents, and a policy
            # built for every notification would be paid on the hot path for nothing.
            return response
        return super().process_response(request, response)

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origins = () if report_only else payment_redirect_origins()
        if origins:
            update = dict(parts.update or {})
            update["form-action"] = [*update.get("form-action", ()), *origins]
            parts.update = update
        return parts
