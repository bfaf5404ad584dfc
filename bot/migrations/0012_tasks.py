# Township tasks (中心工作, 派单): the township's own work pushed down to units. A task has one
# case per target unit (Case.task), in a category of the township's own that the bot makes
# (Category.task) and the directory file never names.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class AddTaskFlag(ops.AddField):
    """Category.task with a default in the database too, as 0011 adds Category.policy."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "category" ADD COLUMN "task" BOOL NOT NULL DEFAULT FALSE'
            )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script('ALTER TABLE "category" DROP COLUMN "task"')


class Migration(migrations.Migration):
    dependencies = [('models', '0011_faq')]

    initial = False

    operations = [
        AddTaskFlag(
            model_name='Category',
            name='task',
            field=fields.BooleanField(default=False),
        ),
        ops.CreateModel(
            name='Task',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('township', fields.ForeignKeyField('models.Township', source_field='township_id', db_constraint=True, to_field='id', related_name='tasks', on_delete=OnDelete.RESTRICT)),
                ('title', fields.CharField(max_length=100)),
                ('description', fields.TextField(default='', unique=False)),
                ('photos', fields.JSONField(default=list)),
                ('creator', fields.ForeignKeyField('models.Official', source_field='creator_id', db_constraint=True, to_field='id', related_name='tasks', on_delete=OnDelete.RESTRICT)),
                ('deadline', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('key', fields.CharField(max_length=64, null=True, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'task', 'app': 'models', 'indexes': [Index(fields=['township_id', 'created_at'])], 'pk_attr': 'id', 'table_description': None},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Case',
            name='task',
            field=fields.ForeignKeyField('models.Task', source_field='task_id', null=True, db_constraint=True, to_field='id', related_name='cases', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['task_id', 'id']),
        ),
    ]
