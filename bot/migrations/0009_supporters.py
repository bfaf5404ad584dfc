# Me too (附议): a villager who meets a problem already reported joins its case instead of
# reporting it again. One row per villager and case; the case keeps the count for its card, the
# lists and the repeat-problem warning.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class AddSupporters(ops.AddField):
    """Case.supporters, added with a default in the database too, so that the cases already
    there get 0 (tortoise adds a NOT NULL column without one, which both databases refuse on a
    table with rows); the way back drops the column in place, as 0005 does."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "case" ADD COLUMN "supporters" INT NOT NULL DEFAULT 0'
            )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script('ALTER TABLE "case" DROP COLUMN "supporters"')


class Migration(migrations.Migration):
    dependencies = [('models', '0008_problem_place')]

    initial = False

    operations = [
        AddSupporters(
            model_name='Case',
            name='supporters',
            field=fields.IntField(default=0),
        ),
        ops.CreateModel(
            name='Supporter',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='supporter_rows', on_delete=OnDelete.RESTRICT)),
                ('villager', fields.ForeignKeyField('models.Villager', source_field='villager_id', db_constraint=True, to_field='id', related_name='supported', on_delete=OnDelete.CASCADE)),
                ('rating', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'supporter', 'app': 'models', 'unique_together': (('case', 'villager'),), 'pk_attr': 'id', 'table_description': 'A villager who joined a case (附议).'},
            bases=['Model'],
        ),
    ]
