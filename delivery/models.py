"""Delivery messages (one row per order and channel) and low-stock alerts."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class MessageState(models.TextChoices):
    PENDING = "pending", _("Waiting to send")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    # A notice whose news was overtaken before it went out (the order was delivered meanwhile).
    SKIPPED = "skipped", _("Not needed any more")


class DeliveryMessage(models.Model):
    """A message to the buyer: the one carrying an order's keys (``notice`` empty), or a notice
    of what happened to the order (``exception.<reason>``, ``refunded``), which never carries a
    key. The row exists before the first send is tried; at most one per order, channel and notice,
    so no notice reaches a buyer twice."""

    order = models.ForeignKey("shop.Order", on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(_("channel"), max_length=16, default="email")
    recipient = models.CharField(_("recipient"), max_length=254)
    notice = models.CharField(_("notice"), max_length=48, blank=True, help_text=_("Empty: the message with the keys."))
    state = models.CharField(_("state"), max_length=16, choices=MessageState.choices, default=MessageState.PENDING)
    tries = models.PositiveSmallIntegerField(_("tries"), default=0)
    next_try_at = models.DateTimeField(_("next try at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("delivery message")
        verbose_name_plural = _("delivery messages")
        constraints = [
            models.UniqueConstraint(fields=["order", "channel", "notice"], name="message_one_per_order_channel_notice"),
        ]
        indexes = [models.Index(fields=["state", "next_try_at"], name="message_state_next_try")]

    def __str__(self) -> str:
        return f"{self.channel} → {self.recipient}"


class AttemptState(models.TextChoices):
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class DeliveryAttempt(models.Model):
    """One try at sending a delivery message, written before the outside call and updated after."""

    message = models.ForeignKey(DeliveryMessage, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField(_("try"))
    state = models.CharField(_("state"), max_length=16, choices=AttemptState.choices, default=AttemptState.SENDING)
    provider_message_id = models.CharField(_("provider message id"), max_length=255, blank=True)
    error = models.TextField(_("error"), blank=True)
    permanent = models.BooleanField(_("permanent failure"), default=False)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["message", "number"]
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")

    def __str__(self) -> str:
        return f"{self.message_id} #{self.number}"


class StockAlert(models.Model):
    """Raised once when a product's available stock falls to its threshold."""

    product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="stock_alerts")
    available = models.PositiveIntegerField(_("available when raised"))
    threshold = models.PositiveIntegerField(_("threshold"))
    created_at = models.DateTimeField(_("raised at"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("stock alert")
        verbose_name_plural = _("stock alerts")
        constraints = [
            # At most one open alert per product: concurrent sales cannot raise it twice.
            models.UniqueConstraint(
                fields=["product"], condition=models.Q(resolved_at__isnull=True), name="stockalert_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product}: {self.available}"


class DeliveryRules(models.Model):
    """Shop-wide delivery rules, edited by operators in admin. One row (pk=1)."""

    auto_delivery = models.BooleanField(
        _("deliver automatically"),
        default=True,
        help_text=_("Off: paid orders wait in the exception queue as held for review."),
    )
    review_amount = models.DecimalField(
        _("hold orders from this total"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Orders whose total is at or above this wait for a person. Empty: no limit."),
    )
    review_orders_per_hour = models.PositiveIntegerField(
        _("hold after this many orders an hour"),
        null=True,
        blank=True,
        help_text=_("Hold an order when its contact or IP placed more paid orders than this in the last hour."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("delivery rules")
        verbose_name_plural = _("delivery rules")

    def __str__(self) -> str:
        return str(_("delivery rules"))
