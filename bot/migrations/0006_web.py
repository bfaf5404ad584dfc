# The back office: single-use sign-in links (only their hash) and the session key made when
# WEB_SECRET is not set.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0005_trust')]

    initial = False

    operations = [
        ops.CreateModel(
            name='WebSignIn',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='web_sign_ins', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'web_sign_in', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A single-use link into the back office, sent by the bot on /web.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebKey',
            fields=[
                ('id', fields.IntField(generated=False, primary_key=True, unique=True, db_index=True)),
                ('secret', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'web_key', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The back office\'s session key when WEB_SECRET is not set.'},
            bases=['Model'],
        ),
    ]
