from django.contrib import admin
from django.urls import include, path

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
