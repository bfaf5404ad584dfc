# Adds what the scheduler needs: when to look at a case next, how far an overdue case was
# supervised, the township's office hours, and indexes for the sweep and the digest.
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Case',
            name='check_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Case',
            name='overdue_level',
            field=fields.IntField(default=0),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['township_id', 'status']),
        ),
        ops.AddIndex(
            model_name='Case',
            index=Index(fields=['check_at']),
        ),
        ops.AddIndex(
            model_name='CaseEvent',
            index=Index(fields=['at']),
        ),
        ops.AddField(
            model_name='Township',
            name='office_hours',
            field=fields.CharField(default='08:30-12:00,14:00-17:30', max_length=64),
        ),
        # Cases open before this upgrade: the scheduler looks at each of them once, now.
        ops.RunSQL(
            "UPDATE \"case\" SET check_at = updated_at WHERE status <> 'closed'",
            reverse_sql="SELECT 1",
        ),
    ]
