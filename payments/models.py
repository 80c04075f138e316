"""Payment attempts and the ledger of every notification received."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class PaymentState(models.TextChoices):
    CREATED = "created", _("Created")
    SUCCEEDED = "succeeded", _("Succeeded")
    MISMATCHED = "mismatched", _("Paid a different amount")
    # Real money for an order another payment had already paid: to be refunded.
    DUPLICATE = "duplicate", _("Paid twice")
    CLOSED = "closed", _("Closed unpaid")
    REFUNDED = "refunded", _("Refunded")


# States in which the platform holds the buyer's money for this payment.
MONEY_RECEIVED = (PaymentState.SUCCEEDED, PaymentState.MISMATCHED, PaymentState.DUPLICATE)
# States a paid notice can still confirm (a trade closed by us may yet be paid: still confirmed).
AWAITING_MONEY = (PaymentState.CREATED, PaymentState.CLOSED)


class Payment(models.Model):
    """One payment attempt of an order at one gateway."""

    order = models.ForeignKey("shop.Order", on_delete=models.PROTECT, related_name="payments")
    gateway = models.CharField(_("gateway"), max_length=32)
    # Unique through Meta.constraints: unique=True would add an unused LIKE index (see shop.Order).
    out_trade_no = models.CharField(_("out trade no"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    paid_amount = models.DecimalField(_("paid amount"), max_digits=12, decimal_places=2, null=True, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=PaymentState.choices, default=PaymentState.CREATED)
    transaction_id = models.CharField(_("gateway transaction id"), max_length=64, blank=True)
    # What the buyer scans (当面付 / Native pay), when the gateway answered with a QR code.
    qr_content = models.CharField(max_length=512, blank=True)
    # For which kind of device the gateway answered: a click on "Pay" soon after reuses the
    # attempt only from the same kind (payment_start; a redirect URL is kept in the cache only).
    mobile = models.BooleanField(default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [models.UniqueConstraint(fields=["out_trade_no"], name="payment_out_trade_no_unique")]
        indexes = [
            # Beat's duplicate-payment check, every minute: the few payments awaiting a refund
            # as duplicates, not every payment ever made.
            models.Index(fields=["order"], condition=models.Q(state="duplicate"), name="payment_duplicate_order"),
        ]

    def __str__(self) -> str:
        return self.out_trade_no


class NotificationVerdict(models.TextChoices):
    ACCEPTED = "accepted", _("Accepted")
    DUPLICATE = "duplicate", _("Duplicate")
    REJECTED = "rejected", _("Rejected")


class PaymentNotification(models.Model):
    """Every asynchronous notification received, verified or not, with its verdict."""

    gateway = models.CharField(_("gateway"), max_length=32)
    # Empty for notifications that failed verification: they have no trustworthy id.
    # NULL, not "": the unique constraint must not count unverified notices as one transaction.
    transaction_id = models.CharField(_("gateway transaction id"), max_length=64, null=True, blank=True)  # noqa: DJ001
    out_trade_no = models.CharField(_("out trade no"), max_length=64, blank=True)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="notifications")
    # Whether the notice said the trade is paid. A trade's waiting notice (WAIT_BUYER_PAY) and
    # its paid notice carry the same transaction id; only a repeat of the same kind is a duplicate.
    paid = models.BooleanField(_("says paid"), default=True)
    raw_payload = models.TextField(_("raw payload"))
    verdict = models.CharField(_("verdict"), max_length=16, choices=NotificationVerdict.choices)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    times_received = models.PositiveIntegerField(_("times received"), default=1)
    received_at = models.DateTimeField(_("first received"), auto_now_add=True)
    last_received_at = models.DateTimeField(_("last received"), auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("payment notification")
        verbose_name_plural = _("payment notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "transaction_id", "paid"], name="notification_unique_transaction"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway}:{self.transaction_id or '-'}"


class RefundState(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class Refund(models.Model):
    """One refund attempt. Every attempt for a payment reuses its out_refund_no, so the platform
    treats a retry as the same refund and money can never go back twice."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    out_refund_no = models.CharField(_("refund request no"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    state = models.CharField(_("state"), max_length=16, choices=RefundState.choices, default=RefundState.REQUESTED)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    requested_by = models.CharField(_("requested by"), max_length=150, blank=True)
    platform_refund_id = models.CharField(_("platform refund id"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        constraints = [
            # One refund in flight or done per payment; only failed attempts may be followed by another.
            models.UniqueConstraint(
                fields=["payment"], condition=~models.Q(state="failed"), name="refund_one_live_per_payment"
            ),
        ]

    def __str__(self) -> str:
        return self.out_refund_no
