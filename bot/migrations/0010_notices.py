# Public notices (通知公告): the notice table, and which roles of a township may post one.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from bot.models import Audience, NoticeKind


class Migration(migrations.Migration):
    dependencies = [('models', '0009_supporters')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Township',
            name='notice_roles',
            field=fields.JSONField(null=True),
        ),
        ops.CreateModel(
            name='Notice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('township', fields.ForeignKeyField('models.Township', source_field='township_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(NoticeKind, max_length=16)),
                ('title', fields.CharField(max_length=100)),
                ('body', fields.TextField()),
                ('photos', fields.JSONField(default=list)),
                ('document', fields.CharField(null=True, max_length=255)),
                ('document_name', fields.CharField(null=True, max_length=255)),
                ('audience', fields.CharEnumField(Audience, max_length=16)),
                ('village_ids', fields.JSONField(default=list)),
                ('grid', fields.ForeignKeyField('models.Grid', source_field='grid_id', null=True, db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('poster', fields.ForeignKeyField('models.Account', source_field='poster_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('reach', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('reported_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('withdrawn_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notice', 'app': 'models', 'pk_attr': 'id', 'indexes': [Index(fields=['township_id', 'created_at'])], 'table_description': 'A public notice to the villagers of a township, some villages or one grid.'},
            bases=['Model'],
        ),
    ]
