"""Per-table autovacuum for the key pool (PostgreSQL only).

Every sale rewrites a key row, so a busy product leaves dead rows behind fast. With the default
scale factor (20 %) a pool of a million keys waits for 200,000 dead rows before a vacuum; the
partial index over available keys would then be walked through dead entries. Vacuum (and
analyze, so the planner keeps choosing the partial index) after 1 % plus 1,000 rows instead.
"""

from django.db import migrations

AUTOVACUUM = (
    "ALTER TABLE cardpool_cardkey SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,"
    " autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000)"
)
RESET = (
    "ALTER TABLE cardpool_cardkey RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
    " autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AUTOVACUUM)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESET)


class Migration(migrations.Migration):
    dependencies = [("cardpool", "0003_import_batch_supplier")]

    operations = [migrations.RunPython(forwards, backwards)]
