# The case history becomes append-only in the database itself: triggers refuse any UPDATE or
# DELETE of a case_event row, and no foreign key acts on the history when a case, an account
# or a unit goes (ON DELETE RESTRICT: a case with events cannot be deleted). TRUNCATE, which
# the tests use to empty PostgreSQL, fires no row triggers. Also the township's language for
# its group chats and channel.
import re

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

#: case_event's foreign keys: column -> (the table it references, its action before 0005).
FOREIGN_KEYS = {
    "case_id": ("case", "CASCADE"),
    "actor_id": ("account", "SET NULL"),
    "unit_id": ("unit", "SET NULL"),
}

REFUSED = "case_event is append-only: an event is never changed or deleted"

SQLITE_TRIGGERS = [
    (
        "CREATE TRIGGER IF NOT EXISTS case_event_no_update BEFORE UPDATE ON case_event "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
        "DROP TRIGGER IF EXISTS case_event_no_update",
    ),
    (
        "CREATE TRIGGER IF NOT EXISTS case_event_no_delete BEFORE DELETE ON case_event "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
        "DROP TRIGGER IF EXISTS case_event_no_delete",
    ),
]

POSTGRES_TRIGGERS = [
    (
        "CREATE OR REPLACE FUNCTION case_event_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{REFUSED} (%)', TG_OP USING ERRCODE = 'restrict_violation'; "
        "END $$",
        "DROP FUNCTION IF EXISTS case_event_append_only()",
    ),
    (
        'CREATE TRIGGER case_event_append_only BEFORE UPDATE OR DELETE ON "case_event" '
        "FOR EACH ROW EXECUTE FUNCTION case_event_append_only()",
        'DROP TRIGGER IF EXISTS case_event_append_only ON "case_event"',
    ),
]


async def _postgres_foreign_keys(client, restrict: bool) -> None:
    _, rows = await client.execute_query(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE conrelid = 'case_event'::regclass AND contype = 'f'"
    )
    for row in rows:
        column = re.search(r"FOREIGN KEY \((\w+)\)", row["definition"]).group(1)
        action = "RESTRICT" if restrict else FOREIGN_KEYS[column][1]
        definition = re.sub(r" ON DELETE [A-Z ]+$", "", row["definition"])
        await client.execute_script(
            f'ALTER TABLE "case_event" DROP CONSTRAINT "{row["conname"]}", '
            f'ADD CONSTRAINT "{row["conname"]}" {definition} ON DELETE {action}'
        )


async def _sqlite_foreign_keys(client, restrict: bool) -> None:
    """SQLite cannot alter a foreign key: the table is rebuilt, its indexes made again."""
    _, rows = await client.execute_query(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'case_event' AND sql IS NOT NULL"
    )
    table = next(row["sql"] for row in rows if row["type"] == "table")
    indexes = [row["sql"] for row in rows if row["type"] == "index"]
    for column, (target, before) in FOREIGN_KEYS.items():
        action = "RESTRICT" if restrict else before
        table, found = re.subn(
            rf'("{column}"[^,]*REFERENCES "{target}" \("id"\) ON DELETE )(CASCADE|SET NULL|RESTRICT)',
            rf"\g<1>{action}",
            table,
        )
        assert found == 1, f"case_event.{column}: foreign key not found"
    table = re.sub(r'"case_event"', '"new__case_event"', table, count=1)
    await client.execute_query(table)
    await client.execute_query('INSERT INTO "new__case_event" SELECT * FROM "case_event"')
    await client.execute_query('DROP TABLE "case_event"')
    await client.execute_query('ALTER TABLE "new__case_event" RENAME TO "case_event"')
    for index in indexes:
        await client.execute_query(index)


async def forward(apps, schema_editor):
    client = schema_editor.client
    if schema_editor.DIALECT == "postgres":
        await _postgres_foreign_keys(client, restrict=True)
        for create, _ in POSTGRES_TRIGGERS:
            await client.execute_script(create)
    elif schema_editor.DIALECT == "sqlite":
        await _sqlite_foreign_keys(client, restrict=True)
        for create, _ in SQLITE_TRIGGERS:
            await client.execute_query(create)  # one statement: its body holds semicolons


async def backward(apps, schema_editor):
    client = schema_editor.client
    if schema_editor.DIALECT == "postgres":
        for _, drop in reversed(POSTGRES_TRIGGERS):
            await client.execute_script(drop)
        await _postgres_foreign_keys(client, restrict=False)
    elif schema_editor.DIALECT == "sqlite":
        for _, drop in reversed(SQLITE_TRIGGERS):
            await client.execute_query(drop)
        await _sqlite_foreign_keys(client, restrict=False)


class AlterForeignKeyState(ops.AlterField):
    """The new ON DELETE in the migration state only: `forward` changes the database, since
    tortoise alters no foreign key action (and on SQLite would rebuild the table without its
    indexes)."""

    async def database_forward(self, *args, **kwargs) -> None:
        return None

    async def database_backward(self, *args, **kwargs) -> None:
        return None


class AddLanguage(ops.AddField):
    """Township.language, added with a default in the database too, so that the townships
    already there get one (tortoise adds a NOT NULL column without one, which both databases
    refuse on a table with rows); on SQLite the way back drops the column in place, where
    tortoise would rebuild the table, which SQLite refuses while other rows point at it."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "township" ADD COLUMN "language" VARCHAR(8) NOT NULL '
                "DEFAULT 'zh-hans'"
            )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "township" DROP COLUMN "language"'
            )


class Migration(migrations.Migration):
    dependencies = [('models', '0004_delivery')]

    initial = False

    operations = [
        AddLanguage(
            model_name='Township',
            name='language',
            field=fields.CharField(default='zh-hans', max_length=8),
        ),
        AlterForeignKeyState(
            model_name='CaseEvent',
            name='case',
            field=fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT),
        ),
        AlterForeignKeyState(
            model_name='CaseEvent',
            name='actor',
            field=fields.ForeignKeyField('models.Account', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='case_events', on_delete=OnDelete.RESTRICT),
        ),
        AlterForeignKeyState(
            model_name='CaseEvent',
            name='unit',
            field=fields.ForeignKeyField('models.Unit', source_field='unit_id', null=True, db_constraint=True, to_field='id', related_name='case_events', on_delete=OnDelete.RESTRICT),
        ),
        ops.RunPython(forward, backward),
    ]
