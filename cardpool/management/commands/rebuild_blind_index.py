from django.core.management.base import BaseCommand

from cardpool.services import cardkeys_rebuild_blind_index


class Command(BaseCommand):
    help = "Recompute every card key's duplicate-detecting blind index with the current CARDPOOL_INDEX_KEY."

    def handle(self, *args, **options):
        self.stdout.write(f"rebuilt the blind index of {cardkeys_rebuild_blind_index()} keys")
