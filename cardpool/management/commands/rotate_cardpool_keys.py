from django.core.management.base import BaseCommand

from cardpool.crypto import keyring
from cardpool.services import cardkeys_rotate


class Command(BaseCommand):
    help = "Re-encrypt every card key to the current (highest) CARDPOOL_KEYS version, online, in chunks."

    def handle(self, *args, **options):
        done = cardkeys_rotate()
        self.stdout.write(f"re-encrypted {done} keys; every key is now on version {keyring().current_version}")
