# Groups and the digest channel bound from the chat (bot.bindings): whether a unit's group
# chat and a township's digest chat were bound there rather than by the directory file, so an
# import whose file names no chat id leaves such a binding alone.
from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class AddFlag(ops.AddField):
    """A boolean with a default in the database too, as 0012 adds Category.task."""

    def __init__(self, table: str, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                f'ALTER TABLE "{self.table}" ADD COLUMN "{self.name}" BOOL NOT NULL DEFAULT FALSE'
            )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                f'ALTER TABLE "{self.table}" DROP COLUMN "{self.name}"'
            )


class Migration(migrations.Migration):
    dependencies = [('models', '0014_started')]

    initial = False

    operations = [
        AddFlag(
            'unit',
            model_name='Unit',
            name='group_bound_in_chat',
            field=fields.BooleanField(default=False),
        ),
        AddFlag(
            'township',
            model_name='Township',
            name='digest_bound_in_chat',
            field=fields.BooleanField(default=False),
        ),
    ]
