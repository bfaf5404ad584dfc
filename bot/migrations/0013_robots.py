# Group robots (群机器人) of WeCom, DingTalk and Feishu: the robot table, and the outbox's link
# to the robot a ROBOT row is posted to (bot.robots).
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from bot.models import RobotKind


class Migration(migrations.Migration):
    dependencies = [('models', '0012_tasks')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Robot',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('township', fields.ForeignKeyField('models.Township', source_field='township_id', db_constraint=True, to_field='id', related_name='robots', on_delete=OnDelete.RESTRICT)),
                ('unit', fields.ForeignKeyField('models.Unit', source_field='unit_id', null=True, db_constraint=True, to_field='id', related_name='robots', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(RobotKind, max_length=16)),
                ('url', fields.CharField(max_length=500)),
                ('secret', fields.CharField(null=True, max_length=200)),
                ('secret_env', fields.CharField(null=True, max_length=100)),
                ('position', fields.IntField(default=0)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'robot', 'app': 'models', 'pk_attr': 'id', 'table_description': "A group robot's webhook of the township (`unit` None) or of one of its units."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Delivery',
            name='robot',
            field=fields.ForeignKeyField('models.Robot', source_field='robot_id', null=True, db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.RESTRICT),
        ),
    ]
