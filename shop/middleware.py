"""Security headers for the storefront."""

from __future__ import annotations

STOREFRONT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class StorefrontCSPMiddleware:
    """A strict Content-Security-Policy on buyer-facing pages: no inline or foreign scripts, so an
    escaping slip cannot run code next to a buyer's keys. The admin keeps Django's own behaviour
    (it still has inline scripts in places)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", STOREFRONT_CSP)
        return response
