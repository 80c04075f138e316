"""Order links: keep sha256 of each existing order's random token (links already emailed keep
working through ``previous_token_hash``) and store the hash of its derived token."""

from django.db import migrations, models

BATCH = 2000


def tokens_hash(apps, schema_editor):
    # The derivation is imported rather than copied: the hash must be the one the running code
    # computes for ``order.access_token``.
    from shop.order_tokens import access_token_hash, order_access_token_hash

    Order = apps.get_model("shop", "Order")
    rows = Order.objects.order_by("pk").values_list("pk", "number", "access_token")
    batch = []
    for pk, number, token in rows.iterator(chunk_size=BATCH):
        batch.append(
            Order(
                pk=pk,
                access_token_hash=order_access_token_hash(number=number),
                previous_token_hash=access_token_hash(token),
            )
        )
        if len(batch) == BATCH:
            Order.objects.bulk_update(batch, ["access_token_hash", "previous_token_hash"])
            batch = []
    if batch:
        Order.objects.bulk_update(batch, ["access_token_hash", "previous_token_hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0012_product_image"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="access_token_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="order",
            name="previous_token_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(tokens_hash, migrations.RunPython.noop),
    ]
