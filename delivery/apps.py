from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = _("Delivery")

    def ready(self) -> None:
        from cardpool.signals import keys_added
        from delivery.handlers import handlers_register, keys_added_restock

        handlers_register()
        keys_added.connect(keys_added_restock, dispatch_uid="delivery.keys_added_restock")
