"""Refuse request paths no view can mean: a NUL byte answers 404 before any view runs.

A decoded path like ``/order/abc%00/`` reaches views as ``"abc\\x00"``; PostgreSQL cannot hold NUL
in text, so the first lookup with it raised ValueError and answered 500. No URL of the shop
contains NUL, so nothing is lost by refusing them all in one place instead of in every view.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


class NulBytePathMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            raise Http404("no such page")
        return self.get_response(request)
