"""manage.py import_keys --product SLUG FILE: the admin import pipeline from the command line."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cardpool.importing import SEPARATORS, ImportRefused, cardkeys_import, layout_for_filename
from shop.models import Product


class Command(BaseCommand):
    help = (
        "Import card keys from a TXT, CSV or XLSX file (UTF-8, UTF-16 or GBK): one key, or a card number and a "
        "password, per line or row. Re-running a file adds no key twice; --dry-run only reports."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--product", required=True, help="product slug")
        parser.add_argument("--separator", choices=sorted(SEPARATORS), help="TXT: card number / password separator")
        parser.add_argument(
            "--key-column", default="1", help="CSV/XLSX: the key (or card number) column, by header or number"
        )
        parser.add_argument("--password-column", default="", help="CSV/XLSX: the password column, if any")
        parser.add_argument("--expiry-column", default="", help="CSV/XLSX: the expiry date column, if any")
        parser.add_argument(
            "--no-header", action="store_true", help="CSV/XLSX: the first row is a key, not column names"
        )
        parser.add_argument("--expires", default="", help="expiry date for keys without their own (2027-12-31)")
        parser.add_argument("--uses", default="1", help="deliveries per key: 1 (unique, default), N, or 'unlimited'")
        parser.add_argument("--supplier", default="")
        parser.add_argument("--unit-cost", default="", help="what one key cost, in yuan")
        parser.add_argument("--note", default="")
        parser.add_argument("--dry-run", action="store_true", help="report what would happen, write nothing")

    def handle(self, *args, file: Path, product: str, dry_run: bool, **options):
        target = Product.objects.filter(slug=product).first()
        if target is None:
            raise CommandError(f"no product with slug {product!r}")
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        if file.stat().st_size > settings.CARDPOOL_IMPORT_MAX_BYTES:
            raise CommandError(
                f"{file} is larger than CARDPOOL_IMPORT_MAX_BYTES ({settings.CARDPOOL_IMPORT_MAX_BYTES} bytes)"
            )
        uses = options["uses"].strip().lower()
        if uses != "unlimited" and not uses.isdigit():
            raise CommandError("--uses takes a number or 'unlimited'")
        try:
            unit_cost = Decimal(options["unit_cost"]) if options["unit_cost"] else None
        except InvalidOperation:
            raise CommandError("--unit-cost takes an amount in yuan, like 8.50") from None
        try:
            layout = layout_for_filename(
                file.name,
                separator=options["separator"],
                secret_column=options["key_column"],
                password_column=options["password_column"],
                expiry_column=options["expiry_column"],
                header=not options["no_header"],
                expires_at=options["expires"],
                max_uses=None if uses == "unlimited" else int(uses),
            )
            report = cardkeys_import(
                product=target,
                raw=file.read_bytes(),
                layout=layout,
                source_name=file.name,
                supplier=options["supplier"],
                unit_cost=unit_cost,
                note=options["note"],
                dry_run=dry_run,
                progress=None if dry_run else lambda done: self.stderr.write(f"\r{done} rows", ending=""),
            )
        except ImportRefused as exc:
            raise CommandError(f"nothing imported: {exc}") from exc
        if not dry_run:
            self.stderr.write("")
        verb = "would add" if dry_run else "added"
        self.stdout.write(
            f"{target.slug}: {report.lines_total} lines, {verb} {report.added}, "
            f"{report.duplicates_in_file} duplicates in the file, {report.duplicates_in_pool} already in the pool, "
            f"{report.duplicates_sold} already sold or void, {report.invalid_count} invalid"
        )
        for line, reason, masked in report.problems[:50]:
            self.stdout.write(f"  line {line}: {reason} ({masked})")
        if not dry_run and report.batch_id:
            self.stdout.write(f"import batch #{report.batch_id}")
