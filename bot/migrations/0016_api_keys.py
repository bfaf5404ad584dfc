# The Open311 GeoReport v2 API (bot/open311.py, web/open311.py): keys issued per township by
# `villagebot apikey` (only their SHA-256 kept), and on a case the key it came through and the
# picture its client pointed to. Both columns are nullable: the cases already there keep NULL.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0015_chat_bindings')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('township', fields.ForeignKeyField('models.Township', source_field='township_id', db_constraint=True, to_field='id', related_name='api_keys', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=64)),
                ('key_hash', fields.CharField(max_length=64, unique=True)),
                ('anonymous_text', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_key', 'app': 'models', 'pk_attr': 'id', 'table_description': None},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Case',
            name='api_key',
            field=fields.ForeignKeyField('models.ApiKey', source_field='api_key_id', null=True, db_constraint=True, to_field='id', related_name='cases', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='Case',
            name='media_url',
            field=fields.CharField(max_length=255, null=True),
        ),
    ]
