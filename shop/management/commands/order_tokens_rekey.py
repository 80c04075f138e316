"""manage.py order_tokens_rekey: after changing ORDER_TOKEN_KEY (or SECRET_KEY while it is unset)."""

from django.core.management.base import BaseCommand

from shop.services import order_tokens_rekey


class Command(BaseCommand):
    help = (
        "Store every order's page-link hash under the current ORDER_TOKEN_KEY, keeping its link under "
        "the previous key working. Run it right after changing the key."
    )

    def handle(self, *args, **options):
        changed = order_tokens_rekey()
        self.stdout.write(f"{changed} orders got a link under the current key; their previous links still open.")
