"""The gateway registry: identifiers → classes, from settings.PAYMENT_GATEWAYS (dotted paths)."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from payments.gateways.base import PaymentGateway


class GatewayNotFound(LookupError):
    pass


@cache
def _gateway_class(dotted_path: str) -> type[PaymentGateway]:
    return import_string(dotted_path)


def gateway_get(identifier: str, *, staff_test: bool = False) -> PaymentGateway:
    """The enabled gateway with this identifier. Raises GatewayNotFound otherwise.

    ``staff_test`` also admits the sandbox while it is off for the public (test mode: staff
    check a product end to end in production; such orders are marked as tests).
    """
    path = settings.PAYMENT_GATEWAYS.get(identifier)
    if path is None:
        raise GatewayNotFound(identifier)
    gateway = _gateway_class(path)()
    if not gateway.is_enabled() and not (staff_test and getattr(gateway, "staff_test_mode", False)):
        raise GatewayNotFound(identifier)
    return gateway


def gateways_enabled(*, staff_test: bool = False) -> list[PaymentGateway]:
    found = []
    for identifier in settings.PAYMENT_GATEWAYS:
        try:
            found.append(gateway_get(identifier, staff_test=staff_test))
        except GatewayNotFound:
            continue
    return found
