from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

from shop.views import healthz

admin.site.site_header = "Kameng 卡盟"
admin.site.site_title = "Kameng"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("payments/", include("payments.urls")),
    path("healthz", healthz, name="healthz"),
    path("", include("shop.urls")),
]

if settings.MEDIA_SERVE:
    # Uploads served by Django itself (make run, tests); in production the proxy serves MEDIA_ROOT.
    urlpatterns.insert(
        0, re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})
    )
