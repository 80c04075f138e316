from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = _("Delivery")

    def ready(self) -> None:
        from delivery.receivers import order_moved_notice
        from shop.signals import order_moved

        order_moved.connect(order_moved_notice, sender=None, dispatch_uid="delivery.order_moved_notice")
