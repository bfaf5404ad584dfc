# Where the problem is: a villager may report a problem in another village. The case's village
# and grid become the problem's place; the reporter's home village at the time of the report is
# kept beside them, because the confidentiality rule keeps a case away from both. Every case
# before this upgrade was reported in its reporter's own village, so that is its home village.
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0007_case_list_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Case',
            name='reporter_village',
            field=fields.ForeignKeyField('models.Village', source_field='reporter_village_id', null=True, db_constraint=True, to_field='id', related_name='reported_cases', on_delete=OnDelete.RESTRICT),
        ),
        ops.RunSQL(
            'UPDATE "case" SET reporter_village_id = village_id WHERE reporter_id IS NOT NULL',
            reverse_sql="SELECT 1",
        ),
    ]
