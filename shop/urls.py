from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("c/<slug:category>/", views.catalog, name="category"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("p/<slug:slug>/", views.product_detail, name="product"),
    path("lookup/", views.order_lookup_view, name="lookup"),
    path("s/<str:token>/", views.order_short_link, name="order-short"),
    path("order/<str:token>/", views.order_detail, name="order"),
    path("order/<str:token>/pay/", views.order_pay, name="order-pay"),
    path("order/<str:token>/pay/<str:out_trade_no>/", views.order_pay_qr, name="order-pay-qr"),
    path("order/<str:token>/status/", views.order_status, name="order-status"),
    path("order/<str:token>/resend/", views.order_resend, name="order-resend"),
    path("order/<str:token>/cancel/", views.order_cancel_view, name="order-cancel"),
]
