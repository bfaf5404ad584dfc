# When a person first wrote to the bot in its private chat (Account.started_at): the bot may
# write to nobody before that, so /setup names the officials bound by the directory file's
# telegram_id who never started it. Accounts from before this upgrade count as started when
# something shows they did: a villager's registration, an invitation redeemed, a back-office
# sign-in link asked for, a step in a case's history, or a message the bot got through to them.
from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0013_robots')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Account',
            name='started_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunSQL(
            'UPDATE "account" SET started_at = created_at WHERE blocked_at IS NULL AND ('
            'id IN (SELECT account_id FROM "villager")'
            ' OR id IN (SELECT used_by_id FROM "invitation" WHERE used_by_id IS NOT NULL)'
            ' OR id IN (SELECT account_id FROM "web_sign_in")'
            ' OR id IN (SELECT actor_id FROM "case_event" WHERE actor_id IS NOT NULL)'
            ' OR id IN (SELECT chat_id FROM "delivery" WHERE sent_at IS NOT NULL))',
            reverse_sql="SELECT 1",
        ),
    ]
