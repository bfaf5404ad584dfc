# The outbox keeps nothing back: which courier holds a row's lease (a restarted process takes
# its own rows back at once), a priority (an emergency case's rows go first), and voice
# messages as a kind of row.
from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.models import DeliveryKind
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_history_indexes')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Delivery',
            name='kind',
            field=fields.CharEnumField(description='TEXT: text\nPHOTO: photo\nALBUM: album\nLOCATION: location\nVOICE: voice\nEDIT: edit', enum_type=DeliveryKind, max_length=16),
        ),
        ops.AddField(
            model_name='Delivery',
            name='lease_owner',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='Delivery',
            name='priority',
            field=fields.SmallIntField(default=0),
        ),
    ]
