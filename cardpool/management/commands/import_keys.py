"""manage.py import_keys --product SLUG FILE: the admin import pipeline from the command line."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cardpool.services import SEPARATORS, ImportRefused, cardkeys_import_text, text_decode
from shop.models import Product


class Command(BaseCommand):
    help = "Import card keys from a text file (UTF-8, UTF-16 or GBK), one key or card number + password per line."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--product", required=True, help="product slug")
        parser.add_argument("--separator", choices=sorted(SEPARATORS), help="card number / password separator")
        parser.add_argument("--supplier", default="")
        parser.add_argument("--dry-run", action="store_true", help="report what would happen, write nothing")

    def handle(self, *args, file: Path, product: str, separator: str | None, supplier: str, dry_run: bool, **options):
        target = Product.objects.filter(slug=product).first()
        if target is None:
            raise CommandError(f"no product with slug {product!r}")
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        if file.stat().st_size > settings.CARDPOOL_IMPORT_MAX_BYTES:
            raise CommandError(f"{file} is larger than CARDPOOL_IMPORT_MAX_BYTES ({settings.CARDPOOL_IMPORT_MAX_BYTES} bytes)")
        try:
            text = text_decode(file.read_bytes())
            report = cardkeys_import_text(
                product=target, text=text, source_name=file.name, separator=separator, supplier=supplier, dry_run=dry_run
            )
        except ImportRefused as exc:
            raise CommandError(f"nothing imported: {exc}") from exc
        verb = "would add" if dry_run else "added"
        self.stdout.write(
            f"{target.slug}: {report.lines_total} lines, {verb} {report.added}, "
            f"{report.duplicates_in_file} duplicates in the file, {report.duplicates_in_pool} already in the pool, "
            f"{len(report.invalid)} invalid"
        )
        for line in report.invalid[:50]:
            self.stdout.write(f"  line {line.line_number}: {line.reason}")
        if not dry_run and report.batch_id:
            self.stdout.write(f"import batch #{report.batch_id}")
