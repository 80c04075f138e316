from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("sandbox/pay/<str:out_trade_no>/", views.sandbox_pay, name="sandbox-pay"),
    path("<slug:gateway>/notify/", views.notify, name="notify"),
]
