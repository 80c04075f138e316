from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CardpoolConfig(AppConfig):
    name = "cardpool"
    verbose_name = _("Card key pool")

    def ready(self) -> None:
        from cardpool import checks  # noqa: F401 - registers the key configuration check
        from cardpool.fulfilment import KeyPoolFulfilment
        from shop.fulfilment import fulfilment_provide

        fulfilment_provide(KeyPoolFulfilment())
