# Keeps the scheduler's cost with the work due rather than the years of history behind it
# (bench/growth.py): indexes for a case's events and outbox rows and for the cases of the last
# weeks, and, on PostgreSQL only, two things Meta.indexes cannot say (see POSTGRES_ONLY).
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

#: (forward, backward) statements.
POSTGRES_ONLY = [
    # The repeat warning looks outbox keys up by prefix (LIKE 'repeat:<village>:<category>:%'),
    # which the unique index on the key can serve only under the C collation.
    (
        'CREATE INDEX IF NOT EXISTS "idx_delivery_key_prefix" '
        'ON "delivery" ("key" varchar_pattern_ops)',
        'DROP INDEX IF EXISTS "idx_delivery_key_prefix"',
    ),
    # The digest and the red and grey list read a week or a month of events out of years of
    # them. With the default 100-bucket histogram the last bucket spans weeks; after a busier
    # past it overestimates the period several times over, and the planner reads the whole
    # case table instead of looking up the period's cases. Takes effect at the next ANALYZE.
    (
        'ALTER TABLE "case_event" ALTER COLUMN "at" SET STATISTICS 1000',
        'ALTER TABLE "case_event" ALTER COLUMN "at" SET STATISTICS -1',
    ),
]


async def postgres_forward(apps, schema_editor):
    if schema_editor.DIALECT == "postgres":
        for forward, _ in POSTGRES_ONLY:
            await schema_editor._run_sql(forward)


async def postgres_backward(apps, schema_editor):
    if schema_editor.DIALECT == "postgres":
        for _, backward in reversed(POSTGRES_ONLY):
            await schema_editor._run_sql(backward)


class Migration(migrations.Migration):
    dependencies = [('models', '0002_supervision')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['created_at']),
        ),
        ops.AddIndex(
            model_name='CaseEvent',
            index=Index(fields=['case_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Delivery',
            index=Index(fields=['case_id', 'id']),
        ),
        ops.RunPython(postgres_forward, postgres_backward),
    ]
