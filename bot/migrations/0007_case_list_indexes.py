# The back office's case list at 100,000 cases and more (bench/web.py): an index for each
# filter that names a directory row (tortoise does not index foreign keys on PostgreSQL), with
# the time received second, so that a filtered list's newest cases are read in order; and, on
# PostgreSQL with pg_trgm, trigram indexes for the text search on number and description.
from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

#: The text search: `CAST(col AS VARCHAR) LIKE '%text%'` on the number and the description
#: when the text has no letter with a case (Chinese, digits), else
#: `UPPER(CAST(col AS VARCHAR)) LIKE UPPER('%text%')`, as tortoise writes `contains` and
#: `icontains`; an index for each, on those very expressions, or the planner could not use
#: them. A trigram index serves a search of three characters or more; one or two characters
#: (a two-character Chinese word) read the table, which stays under the target at 100,000
#: cases (see README, Benchmarks).
TRIGRAM_INDEXES = [
    (
        f'CREATE INDEX IF NOT EXISTS "idx_case_{column}_{kind}_trgm" ON "case" '
        f'USING gin (({expression}) gin_trgm_ops)',
        f'DROP INDEX IF EXISTS "idx_case_{column}_{kind}_trgm"',
    )
    for column in ("number", "description")
    for kind, expression in (
        ("like", f'CAST("{column}" AS VARCHAR)'),
        ("ilike", f'UPPER(CAST("{column}" AS VARCHAR))'),
    )
]


async def _trigrams(schema_editor) -> bool:
    """Whether pg_trgm is installed, or can be (it is a trusted extension from PostgreSQL 13:
    the database's owner may create it); without it the search reads the table."""
    client = schema_editor.client
    _, rows = await client.execute_query(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'pg_trgm'"
    )
    if not rows:
        return False
    if rows[0]["installed_version"] is None:
        await schema_editor._run_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    return True


async def postgres_forward(apps, schema_editor):
    if schema_editor.DIALECT == "postgres" and await _trigrams(schema_editor):
        for forward, _ in TRIGRAM_INDEXES:
            await schema_editor._run_sql(forward)


async def postgres_backward(apps, schema_editor):
    if schema_editor.DIALECT == "postgres":
        for _, backward in reversed(TRIGRAM_INDEXES):
            await schema_editor._run_sql(backward)


class Migration(migrations.Migration):
    dependencies = [('models', '0006_web')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['unit_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['village_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['category_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['assignee_id', 'status']),
        ),
        ops.RunPython(postgres_forward, postgres_backward),
    ]
