"""The buyer's IP address: the one answer for orders, payments, rate limits and audit rows.

Without ``TRUSTED_PROXIES`` the client is the TCP peer (``REMOTE_ADDR``) and every
``X-Forwarded-For`` header is ignored, since anyone can send one. When the peer is inside one of
those networks (the reverse proxy), the client is the address that proxy put at the right end of
``X-Forwarded-For`` (django-ipware, one trusted hop); anything further left was written by the
client and is never believed. A missing or garbage header gives the peer's address, never an
error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from ipware import get_client_ip

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies_parse(values: Iterable[str], *, variable: str = "TRUSTED_PROXIES") -> tuple[_Network, ...]:
    """CIDRs (or single addresses) as networks; raises ImproperlyConfigured naming ``variable``."""
    networks = []
    for value in values:
        value = value.strip()
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{variable}: {value!r} is not an IP network (e.g. 172.16.0.0/12)") from None
    return tuple(networks)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    # ::ffff:1.2.3.4 from a dual-stack socket is the IPv4 client.
    return getattr(address, "ipv4_mapped", None) or address


def request_client_ip(request: HttpRequest) -> str | None:
    """The client's address as text, or None when even the peer's address is unusable (a
    Unix-socket peer). Reads ``settings.TRUSTED_PROXIES`` (parsed networks)."""
    peer = _address(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return None
    proxy = next((net for net in settings.TRUSTED_PROXIES if peer.version == net.version and peer in net), None)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxy is None or not isinstance(forwarded, str) or not forwarded.strip():
        return str(peer)
    # The chain as our proxy passed it on, with the proxy itself as its last hop: ipware checks
    # that hop against the network it matched and returns the address right before it.
    chained = HttpRequest()
    chained.META = {"HTTP_X_FORWARDED_FOR": f"{forwarded[:2000]}, {peer}"}
    try:
        ip, _routable = get_client_ip(
            chained,
            proxy_order="left-most",
            proxy_trusted_ips=[str(proxy)],
            request_header_order=["HTTP_X_FORWARDED_FOR"],
            strict=False,
        )
    except ValueError:
        ip = None
    client = _address(ip)
    return str(client) if client is not None else str(peer)


def client_ip_for_rate_limit(request: HttpRequest) -> str:
    """``request_client_ip`` for django-ratelimit's ``key="ip"`` (``RATELIMIT_IP_META_KEY`` names
    this function; it masks IPv6 clients to their /64 itself). A request without a usable peer
    address shares one key rather than failing."""
    return request_client_ip(request) or "0.0.0.0"  # noqa: S104 - a rate-limit key, not an address to bind
