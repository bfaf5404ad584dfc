# The directory's version (bot/cache.py): a row per kind of rows kept in the processes, its
# number raised by every change to them. No row yet reads as version 0.
from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0016_api_keys')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Version',
            fields=[
                ('name', fields.CharField(primary_key=True, max_length=32, unique=True, db_index=True)),
                ('number', fields.BigIntField(default=0)),
            ],
            options={'table': 'version', 'app': 'models', 'pk_attr': 'name', 'table_description': None},
            bases=['Model'],
        ),
    ]
