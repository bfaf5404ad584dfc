# Policy questions (政策咨询): the township's FAQ entries, proposals waiting for review among
# them, and the flag that marks a township's policy-question category.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from bot.models import FaqStatus


class AddPolicy(ops.AddField):
    """Category.policy with a default in the database too, so the categories already there
    get one (a NOT NULL column without one is refused on a table with rows); on SQLite the way
    back drops the column in place rather than rebuilding a table other rows point at."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "category" ADD COLUMN "policy" BOOL NOT NULL DEFAULT FALSE'
            )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is not None:
            await state_editor.client.execute_script(
                'ALTER TABLE "category" DROP COLUMN "policy"'
            )


class Migration(migrations.Migration):
    dependencies = [('models', '0010_notices')]

    initial = False

    operations = [
        AddPolicy(
            model_name='Category',
            name='policy',
            field=fields.BooleanField(default=False),
        ),
        ops.CreateModel(
            name='FaqEntry',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('township', fields.ForeignKeyField('models.Township', source_field='township_id', db_constraint=True, to_field='id', related_name='faq', on_delete=OnDelete.RESTRICT)),
                ('code', fields.CharField(max_length=32)),
                ('question', fields.TextField(unique=False)),
                ('questions', fields.JSONField(default=dict)),
                ('answer', fields.TextField(unique=False)),
                ('answers', fields.JSONField(default=dict)),
                ('keywords', fields.JSONField(default=list)),
                ('position', fields.IntField(default=0)),
                ('status', fields.CharEnumField(default=FaqStatus.LIVE, description='PROPOSED: proposed\nLIVE: live\nREJECTED: rejected', enum_type=FaqStatus, max_length=16)),
                ('from_file', fields.BooleanField(default=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', null=True, db_constraint=True, to_field='id', related_name='faq_entries', on_delete=OnDelete.RESTRICT)),
                ('proposed_by', fields.ForeignKeyField('models.Official', source_field='proposed_by_id', null=True, db_constraint=True, to_field='id', related_name='faq_proposals', on_delete=OnDelete.RESTRICT)),
                ('reviewed_by', fields.ForeignKeyField('models.Account', source_field='reviewed_by_id', null=True, db_constraint=True, to_field='id', related_name='faq_reviews', on_delete=OnDelete.SET_NULL)),
                ('reviewed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('helped', fields.IntField(default=0)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'faq_entry', 'app': 'models', 'unique_together': (('township', 'code'),), 'pk_attr': 'id', 'table_description': None},
            bases=['Model'],
        ),
    ]
