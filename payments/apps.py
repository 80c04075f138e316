from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = _("Payments")

    def ready(self) -> None:
        # A half-configured gateway or a malformed key stops start-up here, naming the
        # variable, instead of surfacing as a 500 at checkout.
        from django.conf import settings
        from django.utils.module_loading import import_string

        for dotted_path in settings.PAYMENT_GATEWAYS.values():
            import_string(dotted_path).config()
