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


def gateway_get(identifier: str) -> PaymentGateway:
    """The enabled gateway with this identifier. Raises GatewayNotFound otherwise."""
    path = settings.PAYMENT_GATEWAYS.get(identifier)
    if path is None:
        raise GatewayNotFound(identifier)
    gateway = _gateway_class(path)()
    if not gateway.is_enabled():
        raise GatewayNotFound(identifier)
    return gateway


def gateways_enabled() -> list[PaymentGateway]:
    found = []
    for identifier in settings.PAYMENT_GATEWAYS:
        try:
            found.append(gateway_get(identifier))
        except GatewayNotFound:
            continue
    return found
