"""The encrypted key pool. Key status changes only in ``cardpool.services`` and ``delivery.services``."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class CardKeyStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
    RESERVED = "reserved", _("Reserved")
    SOLD = "sold", _("Sold")
    VOID = "void", _("Void")
    # A reusable key that has reached its cap on uses.
    USED_UP = "used_up", _("Used up")


class ImportStatus(models.TextChoices):
    ANALYSING = "analysing", _("Checking the file")
    READY = "ready", _("Waiting for confirmation")
    IMPORTING = "importing", _("Importing")
    DONE = "done", _("Done")
    REFUSED = "refused", _("Refused")
    CANCELLED = "cancelled", _("Cancelled")


class ImportBatch(models.Model):
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="import_batches")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source_name = models.CharField(_("source"), max_length=255, blank=True)
    supplier = models.CharField(_("supplier"), max_length=100, blank=True)
    unit_cost = models.DecimalField(_("unit cost"), max_digits=10, decimal_places=2, null=True, blank=True)
    note = models.TextField(_("note"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=ImportStatus.choices, default=ImportStatus.DONE)
    # How to read the file (cardpool.importing.ImportLayout as a dict).
    layout = models.JSONField(_("layout"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    lines_total = models.PositiveIntegerField(_("lines"), default=0)
    added = models.PositiveIntegerField(_("added"), default=0)
    duplicates_in_file = models.PositiveIntegerField(_("duplicates in file"), default=0)
    duplicates_in_pool = models.PositiveIntegerField(_("duplicates of unsold keys"), default=0)
    duplicates_sold = models.PositiveIntegerField(_("already sold or void"), default=0)
    invalid = models.PositiveIntegerField(_("invalid lines"), default=0)
    # Commit progress: rows of the file handled so far, saved with each chunk in its transaction.
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    # The preview's counts and the invalid lines (line number, reason, masked key), never plaintext.
    preview = models.JSONField(_("preview"), default=dict, blank=True)
    created_at = models.DateTimeField(_("imported at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("last progress"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")

    def __str__(self) -> str:
        return f"#{self.pk} {self.product} +{self.added}"


class ImportUpload(models.Model):
    """An uploaded key file waiting for its import, in encrypted pieces (AES-GCM under the current
    CARDPOOL_KEYS key, bound to the batch and piece number). Deleted when the import ends."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="upload_pieces")
    seq = models.PositiveIntegerField()
    key_version = models.PositiveSmallIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "seq"], name="importupload_unique_piece")]

    def __str__(self) -> str:
        return f"#{self.batch_id} piece {self.seq}"


class CardKey(models.Model):
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="card_keys")
    batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="keys")
    # AES-256-GCM: nonce || ciphertext || tag, under the key numbered key_version.
    ciphertext = models.BinaryField()
    key_version = models.PositiveSmallIntegerField()
    # HMAC-SHA256 of the normalized secret: finds duplicates without storing plaintext.
    blind_index = models.CharField(max_length=64)
    index_version = models.PositiveSmallIntegerField(default=1)
    mask = models.CharField(_("key (masked)"), max_length=32)
    status = models.CharField(
        _("status"), max_length=16, choices=CardKeyStatus.choices, default=CardKeyStatus.AVAILABLE
    )
    order = models.ForeignKey("shop.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="card_keys")
    # Keys that expire are sold soonest-expiring first and never after expiry; NULL never expires.
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    # Reusable keys (shared accounts, generic codes): max_uses > 1, or NULL for no cap. Such a key
    # stays available and each order gets its own sold row (reuse_of) until the cap is reached.
    max_uses = models.PositiveIntegerField(_("max uses"), null=True, blank=True, default=1)
    uses = models.PositiveIntegerField(_("uses"), default=0)
    reuse_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
        verbose_name=_("reusable key"),
    )
    created_at = models.DateTimeField(_("added at"), auto_now_add=True)
    sold_at = models.DateTimeField(_("sold at"), null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("card key")
        verbose_name_plural = _("card keys")
        permissions = [
            ("reveal_cardkey", _("Can reveal a card key (audited)")),
            ("export_cardkey", _("Can export unsold card keys (audited)")),
        ]
        constraints = [
            # Dedupe across the whole pool, sold keys included.
            models.UniqueConstraint(fields=["product", "blind_index"], name="cardkey_unique_per_product"),
            # A sold key always names its order; an available one never does.
            models.CheckConstraint(
                condition=(models.Q(status="sold", order__isnull=False) | ~models.Q(status="sold")),
                name="cardkey_sold_has_order",
            ),
            models.CheckConstraint(
                condition=(models.Q(status="available", order__isnull=True) | ~models.Q(status="available")),
                name="cardkey_available_has_no_order",
            ),
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True) | models.Q(uses__lte=models.F("max_uses")),
                name="cardkey_uses_within_cap",
            ),
        ]
        indexes = [
            # Serves the reservation query (product, available, ORDER BY expires_at, id LIMIT n)
            # and stays small however many keys have been sold. The ORDER BY is one the primary
            # key cannot serve: with ORDER BY id alone PostgreSQL may walk the primary key through
            # every sold row, expecting an available one at any moment.
            models.Index(
                fields=["product", "expires_at", "id"],
                name="cardkey_available_idx",
                condition=models.Q(status="available"),
            ),
        ]

    def __str__(self) -> str:
        return self.mask


class RevealKind(models.TextChoices):
    REVEAL = "reveal", _("Reveal")
    EXPORT = "export", _("Export")


class RevealLog(models.Model):
    """Every plaintext access by staff: who, when, from where, which keys, and why."""

    kind = models.CharField(_("kind"), max_length=16, choices=RevealKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, verbose_name=_("user"))
    username = models.CharField(_("username"), max_length=150)
    ip = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    key = models.ForeignKey(
        CardKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="reveals", verbose_name=_("key")
    )
    product = models.ForeignKey(
        "shop.Product", null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("product")
    )
    key_count = models.PositiveIntegerField(_("keys"), default=1)
    reason = models.TextField(_("reason"))
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("plaintext access")
        verbose_name_plural = _("plaintext access log")

    def __str__(self) -> str:
        return f"{self.username} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"
