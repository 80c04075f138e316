import json

from django.db import migrations, models

UNPAID = ("WAIT_BUYER_PAY", "TRADE_CLOSED")


def unpaid_notices_mark(apps, schema_editor):
    """Notices recorded before this field existed that did not say paid (Alipay's and the
    sandbox's trade_status is in the stored form)."""
    PaymentNotification = apps.get_model("payments", "PaymentNotification")
    candidates = PaymentNotification.objects.filter(verdict="accepted").filter(
        models.Q(raw_payload__contains=UNPAID[0]) | models.Q(raw_payload__contains=UNPAID[1])
    )
    for notice in candidates.iterator():
        try:
            status = json.loads(notice.raw_payload).get("trade_status")
        except (ValueError, AttributeError):
            continue
        if status in UNPAID:
            PaymentNotification.objects.filter(pk=notice.pk).update(paid=False)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0003_refunds_and_duplicate_payments"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="paymentnotification",
            name="notification_unique_transaction",
        ),
        migrations.AddField(
            model_name="paymentnotification",
            name="paid",
            field=models.BooleanField(default=True, verbose_name="says paid"),
        ),
        migrations.RunPython(unpaid_notices_mark, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="paymentnotification",
            constraint=models.UniqueConstraint(
                fields=("gateway", "transaction_id", "paid"), name="notification_unique_transaction"
            ),
        ),
    ]
