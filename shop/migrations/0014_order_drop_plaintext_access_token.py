"""Order links: the plaintext token column goes; the hashes become unique (a separate migration
from the data step, so PostgreSQL alters the table in a transaction of its own)."""

from django.db import migrations, models

BATCH = 2000


def tokens_restore(apps, schema_editor):
    # Going back: the plaintext column gets each order's derived token, so links made by the
    # newer code still open the page; the random tokens of older links are gone for good.
    from shop.order_tokens import order_access_token

    Order = apps.get_model("shop", "Order")
    for pk, number in Order.objects.values_list("pk", "number").iterator(chunk_size=BATCH):
        Order.objects.filter(pk=pk).update(access_token=order_access_token(number=number))


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0013_order_access_token_hash"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="order", name="order_access_token_unique"),
        migrations.RunPython(migrations.RunPython.noop, tokens_restore),
        migrations.RemoveField(model_name="order", name="access_token"),
        migrations.AlterField(
            model_name="order",
            name="access_token_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.UniqueConstraint(fields=("access_token_hash",), name="order_access_token_hash_unique"),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.UniqueConstraint(
                condition=models.Q(previous_token_hash__isnull=False),
                fields=("previous_token_hash",),
                name="order_previous_token_hash_unique",
            ),
        ),
    ]
