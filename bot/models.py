"""The tables.

Directory rows (townships, villages, grids, units, categories, officials) are never deleted:
cases will point at them for years, so a row that leaves the directory file is marked
inactive instead. Every time is stored in UTC; the township's zone is applied on display.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from bot.worktime import DEFAULT_OFFICE_HOURS


class UnitKind(StrEnum):
    GRID = "grid"
    VILLAGE = "village"
    TOWNSHIP_TEAM = "township_team"
    TOWNSHIP_OFFICE = "township_office"
    DEPARTMENT = "department"


class Level(StrEnum):
    """Where a category is handled first, lowest first (the sieve)."""

    GRID = "grid"
    VILLAGE = "village"
    TOWNSHIP = "township"
    DEPARTMENT = "department"


class Role(StrEnum):
    MEMBER = "member"
    LEADER = "leader"
    DISPATCHER = "dispatcher"
    ADMIN = "admin"


#: Who may post a public notice when the directory does not say.
NOTICE_ROLES: tuple[str, ...] = (Role.LEADER, Role.DISPATCHER, Role.ADMIN)


class Named:
    """Directory rows carry a name and optional translations of it (`names`)."""

    name: str
    names: dict[str, str]

    def display_name(self, language: str) -> str:
        return self.names.get(language) or self.name


class Township(Model, Named):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=16, unique=True, description="case-number prefix")
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    timezone = fields.CharField(max_length=64, default="Asia/Shanghai")
    digest_chat_id = fields.BigIntField(null=True)
    # The digest chat was bound in the chat (/digesthere, a forwarded post), not by the
    # directory file: an import whose file names none leaves it alone (bot.bindings).
    digest_bound_in_chat = fields.BooleanField(default=False)
    emergency_numbers: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    days_off: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    working_days: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    # When a category counts working hours: the office's hours on a working day (bot.worktime).
    office_hours = fields.CharField(max_length=64, default=DEFAULT_OFFICE_HOURS)
    # The language of its group chats and channel, read by many (zh-hans, zh-hant or en).
    language = fields.CharField(max_length=8, default="zh-hans")
    # Which roles may post a public notice (the directory's `notice_roles`).
    # None: `NOTICE_ROLES`.
    notice_roles: list[str] | None = fields.JSONField(null=True)  # type: ignore[assignment]
    active = fields.BooleanField(default=True)

    class Meta:
        table = "township"


class Village(Model, Named):
    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="villages", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    position = fields.IntField(default=0)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "village"
        unique_together = (("township", "code"),)


class Grid(Model, Named):
    id = fields.IntField(primary_key=True)
    village: fields.ForeignKeyRelation[Village] = fields.ForeignKeyField(
        "models.Village", related_name="grids", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    position = fields.IntField(default=0)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "grid"
        unique_together = (("village", "code"),)


class Unit(Model, Named):
    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="units", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    kind = fields.CharEnumField(UnitKind, max_length=20)
    village: fields.ForeignKeyNullableRelation[Village] = fields.ForeignKeyField(
        "models.Village", related_name="units", null=True, on_delete=fields.RESTRICT
    )
    grid: fields.ForeignKeyNullableRelation[Grid] = fields.ForeignKeyField(
        "models.Grid", related_name="units", null=True, on_delete=fields.RESTRICT
    )
    group_chat_id = fields.BigIntField(null=True)
    # The group was bound in the chat, not by the directory file (see Township).
    group_bound_in_chat = fields.BooleanField(default=False)
    supervisor: fields.ForeignKeyNullableRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="supervised", null=True, on_delete=fields.SET_NULL
    )
    active = fields.BooleanField(default=True)

    class Meta:
        table = "unit"
        unique_together = (("township", "code"),)


class Category(Model, Named):
    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="categories", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    parent: fields.ForeignKeyNullableRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    position = fields.IntField(default=0)
    # Only leaves carry handling rules.
    level = fields.CharEnumField(Level, max_length=20, null=True)
    unit: fields.ForeignKeyNullableRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="categories", null=True, on_delete=fields.RESTRICT
    )
    accept_hours = fields.IntField(null=True)
    resolve_hours = fields.IntField(null=True)
    working_hours = fields.BooleanField(default=False)
    emergency = fields.BooleanField(default=False)
    confidential = fields.BooleanField(default=False)
    #: 政策咨询: the category a policy question becomes a case of (`bot.faq`).
    policy = fields.BooleanField(default=False)
    #: 中心工作: the township's own category for its tasks' cases (`bot.tasks`), made by the
    #: bot, never by the directory file, and never offered to villagers.
    task = fields.BooleanField(default=False)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "category"
        unique_together = (("township", "code"),)


class FaqStatus(StrEnum):
    """A proposal waits for an administrator; approved or from the file, it is live."""

    PROPOSED = "proposed"
    LIVE = "live"
    REJECTED = "rejected"


class FaqEntry(Model):
    """A question villagers ask and the township's answer, in its languages (`bot.faq`).

    `question`/`answer` are in the township's language, `questions`/`answers` translations,
    as `name`/`names` are for directory rows. `from_file`: the directory file owns the entry
    (an import that leaves it out deactivates it); an entry approved in the back office stays
    until a file lists its code.
    """

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="faq", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    question = fields.TextField()
    questions: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    answer = fields.TextField()
    answers: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    keywords: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    position = fields.IntField(default=0)
    status = fields.CharEnumField(FaqStatus, max_length=16, default=FaqStatus.LIVE)
    from_file = fields.BooleanField(default=True)
    #: The policy case an official proposed this from, and who proposed and reviewed it.
    case: fields.ForeignKeyNullableRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="faq_entries", null=True, on_delete=fields.RESTRICT
    )
    proposed_by: fields.ForeignKeyNullableRelation[Official] = fields.ForeignKeyField(
        "models.Official", related_name="faq_proposals", null=True, on_delete=fields.RESTRICT
    )
    reviewed_by: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="faq_reviews", null=True, on_delete=fields.SET_NULL
    )
    reviewed_at = fields.DatetimeField(null=True)
    #: How many times a villager said it answered their question.
    helped = fields.IntField(default=0)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "faq_entry"
        unique_together = (("township", "code"),)

    def question_in(self, language: str) -> str:
        return self.questions.get(language) or self.question

    def answer_in(self, language: str) -> str:
        return self.answers.get(language) or self.answer


class Account(Model):
    """A Telegram user who has talked to the bot (villager, official, or both)."""

    id = fields.BigIntField(primary_key=True, generated=False, description="Telegram user id")
    first_name = fields.CharField(max_length=128, default="")
    username = fields.CharField(max_length=64, null=True)
    language = fields.CharField(max_length=8)
    language_chosen = fields.BooleanField(default=False)
    blocked_at = fields.DatetimeField(null=True)
    # When the person first wrote to the bot in its private chat: only then may the bot write
    # to them. An account the directory made from a telegram_id has none until then (/setup).
    started_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "account"


class Official(Model, Named):
    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="officials", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=100)
    names: dict[str, str] = fields.JSONField(default=dict)  # type: ignore[assignment]
    role = fields.CharEnumField(Role, max_length=16, default=Role.MEMBER)
    phone = fields.CharField(max_length=32, null=True)
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="officials", null=True, on_delete=fields.SET_NULL
    )
    units: fields.ManyToManyRelation[Unit] = fields.ManyToManyField(
        "models.Unit", related_name="members", through="official_unit"
    )
    active = fields.BooleanField(default=True)

    class Meta:
        table = "official"
        unique_together = (("township", "code"),)


class Villager(Model):
    id = fields.IntField(primary_key=True)
    account: fields.OneToOneRelation[Account] = fields.OneToOneField(
        "models.Account", related_name="villager", on_delete=fields.CASCADE
    )
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="villagers", on_delete=fields.RESTRICT
    )
    village: fields.ForeignKeyRelation[Village] = fields.ForeignKeyField(
        "models.Village", related_name="villagers", on_delete=fields.RESTRICT
    )
    grid: fields.ForeignKeyNullableRelation[Grid] = fields.ForeignKeyField(
        "models.Grid", related_name="villagers", null=True, on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=64)
    phone = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "villager"


class Invitation(Model):
    """A single-use deep-link token that binds a Telegram account to an official.

    Only the token's SHA-256 is stored, so a database dump does not hand out logins.
    """

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    official: fields.ForeignKeyRelation[Official] = fields.ForeignKeyField(
        "models.Official", related_name="invitations", on_delete=fields.CASCADE
    )
    created_by: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="invitations_created", null=True,
        on_delete=fields.SET_NULL,
    )
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    used_by: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="invitations_used", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "invitation"


class WebSignIn(Model):
    """A single-use link into the back office, sent by the bot on /web.

    Only the token's SHA-256 is stored, as for invitations.
    """

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="web_sign_ins", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "web_sign_in"


class WebKey(Model):
    """The back office's session key when WEB_SECRET is not set: made once, in the database,
    so that every process serving the back office (`run`, `web`) signs the same cookies."""

    id = fields.IntField(primary_key=True, generated=False)
    secret = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()

    class Meta:
        table = "web_key"


class Conversation(Model):
    """One chat's conversation state, so a half-finished report survives a restart."""

    key = fields.CharField(max_length=191, primary_key=True)
    state = fields.CharField(max_length=128, null=True)
    data: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "conversation"


class Version(Model):
    """A number that goes up with every change to one kind of rows, in any process: what a
    process keeps of those rows stands while the number it read them at is the current one
    (`bot.cache`)."""

    name = fields.CharField(max_length=32, primary_key=True)
    number = fields.BigIntField(default=0)

    class Meta:
        table = "version"


class CaseStatus(StrEnum):
    """Where a case stands; `bot.cases` holds the transitions between these."""

    NEW = "new"  # routed to a unit, waiting for someone to accept it
    ACCEPTED = "accepted"  # an official works on it
    RESOLVED = "resolved"  # done with evidence, waiting for the villager's word
    CLOSED = "closed"  # rated, or closed by itself after a while


class Task(Model):
    """中心工作 (派单): the township's own work pushed down to units, one case per target unit.

    Its cases go through the same loop as villagers' (`Case.task`); there is no villager, and
    the creator (or a township dispatcher) reviews the evidence: accepts it, or sends it back.
    """

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="tasks", on_delete=fields.RESTRICT
    )
    title = fields.CharField(max_length=100)
    description = fields.TextField(default="")
    photos: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    creator: fields.ForeignKeyRelation[Official] = fields.ForeignKeyField(
        "models.Official", related_name="tasks", on_delete=fields.RESTRICT
    )
    deadline = fields.DatetimeField()
    # The draft it came from: a Create delivered twice finds the task it already made.
    key = fields.CharField(max_length=64, unique=True, null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "task"
        indexes = (("township_id", "created_at"),)


class ApiKey(Model):
    """A key of the Open311 API (`bot.open311`), issued per township by `villagebot apikey`.

    Only the key's SHA-256 is stored, as for invitations. `anonymous_text`: the holder may read
    the descriptions of anonymous reports. A revoked key is kept (its cases point at it).
    """

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="api_keys", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=64)
    key_hash = fields.CharField(max_length=64, unique=True)
    anonymous_text = fields.BooleanField(default=False)
    created_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"


class CaseCounter(Model):
    """The last case number of a township and year: numbers without gaps or repeats."""

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="counters", on_delete=fields.CASCADE
    )
    year = fields.IntField()
    last_number = fields.IntField(default=0)

    class Meta:
        table = "case_counter"
        unique_together = (("township", "year"),)


class Case(Model):
    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=32, unique=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="cases", on_delete=fields.RESTRICT
    )
    reporter: fields.ForeignKeyNullableRelation[Villager] = fields.ForeignKeyField(
        "models.Villager", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="cases", on_delete=fields.RESTRICT
    )
    # Where the problem is (migration 0008): the reporter's own village and grid unless they
    # reported it in another village, whose grid nobody asks (see bot/flows/report.py).
    village: fields.ForeignKeyRelation[Village] = fields.ForeignKeyField(
        "models.Village", related_name="cases", on_delete=fields.RESTRICT
    )
    grid: fields.ForeignKeyNullableRelation[Grid] = fields.ForeignKeyField(
        "models.Grid", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    # The reporter's home village when they reported: the confidentiality rule keeps a case
    # away from the units of both villages (bot/scope.py). Kept on the case, because a
    # villager who moves must not open a way for the village they left.
    reporter_village: fields.ForeignKeyNullableRelation[Village] = fields.ForeignKeyField(
        "models.Village", related_name="reported_cases", null=True, on_delete=fields.RESTRICT
    )
    unit: fields.ForeignKeyRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="cases", on_delete=fields.RESTRICT
    )
    assignee: fields.ForeignKeyNullableRelation[Official] = fields.ForeignKeyField(
        "models.Official", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    status = fields.CharEnumField(CaseStatus, max_length=16, default=CaseStatus.NEW)
    description = fields.TextField(default="")
    voice_file_id = fields.CharField(max_length=255, null=True)
    photos: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    latitude = fields.FloatField(null=True)
    longitude = fields.FloatField(null=True)
    address = fields.CharField(max_length=255, null=True)
    anonymous = fields.BooleanField(default=False)
    accept_by = fields.DatetimeField(null=True)
    resolve_by = fields.DatetimeField(null=True)
    accepted_at = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    rating = fields.IntField(null=True)
    rating_comment = fields.TextField(null=True)
    reopen_count = fields.IntField(default=0)
    # The township task this case is one target of (中心工作); None for a villager's report.
    task: fields.ForeignKeyNullableRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    # Villagers who joined the case (附议, `Supporter`), kept here for the card and the lists.
    supporters = fields.IntField(default=0)
    escalation_level = fields.IntField(default=0)
    # How many supervising levels were told that the resolve deadline passed (督办).
    overdue_level = fields.IntField(default=0)
    # When the scheduler must look at the case next (a reminder, a deadline, auto-close);
    # every transition sets it to "now" and the scheduler works out the next moment.
    check_at = fields.DatetimeField(null=True)
    # The draft it came from: a Submit delivered twice finds the case it already made. A case
    # from the Open311 API has `open311:<token>` here, the token its client was given.
    report_key = fields.CharField(max_length=64, unique=True, null=True)
    # Reported through the Open311 API with this key (migration 0013): there is no reporter.
    api_key: fields.ForeignKeyNullableRelation[ApiKey] = fields.ForeignKeyField(
        "models.ApiKey", related_name="cases", null=True, on_delete=fields.RESTRICT
    )
    # The picture an API client pointed to (its own URL; the case's Telegram photos are never
    # published).
    media_url = fields.CharField(max_length=255, null=True)
    # Every transition bumps it; a write that expected another version changes nothing.
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "case"
        indexes = (
            ("status", "unit_id"),
            ("township_id", "created_at"),
            ("township_id", "status"),
            ("check_at",),
            ("created_at",),
            # The back office's list filters (migration 0007, which also adds PostgreSQL's
            # trigram indexes for the text search).
            ("unit_id", "created_at"),
            ("village_id", "created_at"),
            ("category_id", "created_at"),
            ("assignee_id", "status"),
            ("task_id", "id"),
        )


class Supporter(Model):
    """A villager who met the same problem and joined an open case instead of reporting it
    again (附议, "me too"): they follow it (its public updates, the request to rate it) and
    count on it. One row per villager and case (migration 0009)."""

    id = fields.IntField(primary_key=True)
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="supporter_rows", on_delete=fields.RESTRICT
    )
    villager: fields.ForeignKeyRelation[Villager] = fields.ForeignKeyField(
        "models.Villager", related_name="supported", on_delete=fields.CASCADE
    )
    # The supporter's own stars for the result, 1-5; not the case's rating (see README).
    rating = fields.IntField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "supporter"
        unique_together = (("case", "villager"),)


class CaseEvent(Model):
    """One step in a case's append-only history: who, when, what, from which state."""

    id = fields.IntField(primary_key=True)
    # The history outlives nothing it records: a case with events cannot be deleted, and
    # the database refuses to change or delete an event (migration 0004).
    case: fields.ForeignKeyRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="events", on_delete=fields.RESTRICT
    )
    at = fields.DatetimeField()
    action = fields.CharField(max_length=16)
    actor: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="case_events", null=True, on_delete=fields.RESTRICT
    )
    from_status = fields.CharField(max_length=16, null=True)
    to_status = fields.CharField(max_length=16)
    unit: fields.ForeignKeyNullableRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="case_events", null=True, on_delete=fields.RESTRICT
    )
    note = fields.TextField(null=True)
    attachments: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    public = fields.BooleanField(default=True)

    class Meta:
        table = "case_event"
        indexes = (("at",), ("case_id", "id"))


class RobotKind(StrEnum):
    """The work-group apps whose custom robots (群机器人) take webhook posts."""

    WECOM = "wecom"  # 企业微信
    DINGTALK = "dingtalk"  # 钉钉
    FEISHU = "feishu"  # 飞书


class Robot(Model):
    """A group robot's webhook of the township (`unit` None) or of one of its units.

    The secret signs DingTalk's and Feishu's posts; `secret_env` names an environment variable
    read at send time instead, so the secret is never in the database. Never deleted (the
    outbox points at it): one that leaves the directory is marked inactive.
    """

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="robots", on_delete=fields.RESTRICT
    )
    unit: fields.ForeignKeyNullableRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="robots", null=True, on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(RobotKind, max_length=16)
    url = fields.CharField(max_length=500)
    secret = fields.CharField(max_length=200, null=True)
    secret_env = fields.CharField(max_length=100, null=True)
    position = fields.IntField(default=0)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "robot"


class DeliveryKind(StrEnum):
    TEXT = "text"
    PHOTO = "photo"
    ALBUM = "album"
    LOCATION = "location"
    VOICE = "voice"
    EDIT = "edit"
    #: A post to a group robot (`Delivery.robot`): a text, or an image where the app takes one.
    ROBOT = "robot"


class Delivery(Model):
    """One Telegram message to send or edit: the outbox.

    Written in the same transaction as the change that caused it, so a change is never told
    without happening nor happens without being told; the courier sends rows in id order per
    chat and records what Telegram answered.
    """

    id = fields.BigIntField(primary_key=True)
    chat_id = fields.BigIntField()
    kind = fields.CharEnumField(DeliveryKind, max_length=16)
    # text, photos, reply_markup, ...: what the Bot API call needs. A TEXT row may carry the
    # photo (or upload, or voice) its text is the caption of; `silent` sends without a sound.
    payload: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    # An EDIT names the row whose sent message it changes.
    edit_of: fields.ForeignKeyNullableRelation[Delivery] = fields.ForeignKeyField(
        "models.Delivery", related_name="edits", null=True, on_delete=fields.CASCADE
    )
    case: fields.ForeignKeyNullableRelation[Case] = fields.ForeignKeyField(
        "models.Case", related_name="deliveries", null=True, on_delete=fields.CASCADE
    )
    # A case card: the message whose copies are edited when someone takes the case.
    card = fields.BooleanField(default=False)
    # A ROBOT row's webhook; its `chat_id` is `bot.robots.chat_of(robot)`, no Telegram chat.
    robot: fields.ForeignKeyNullableRelation[Robot] = fields.ForeignKeyField(
        "models.Robot", related_name="deliveries", null=True, on_delete=fields.RESTRICT
    )
    # Unique when given: asking twice to send the same thing queues it once (reminders).
    key = fields.CharField(max_length=128, unique=True, null=True)
    created_at = fields.DatetimeField()
    not_before = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    # A courier owns the row until `lease_until`; a crashed courier's rows are taken over.
    lease_until = fields.DatetimeField(null=True)
    # Which courier (the INSTANCE setting) holds the lease: restarted, it takes its rows back.
    lease_owner = fields.CharField(max_length=64, null=True)
    # Higher goes first across chats (an emergency case's rows); each chat keeps its order.
    priority = fields.SmallIntField(default=0)
    sent_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)
    error = fields.CharField(max_length=255, null=True)
    message_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]

    class Meta:
        table = "delivery"
        indexes = (("sent_at", "failed_at", "not_before"), ("chat_id", "id"), ("case_id", "id"))


class NoticeKind(StrEnum):
    """What a public notice is about (村务公开 and the rest)."""

    VILLAGE = "village"  # village affairs
    FINANCE = "finance"
    PARTY = "party"
    GENERAL = "general"


class Audience(StrEnum):
    TOWNSHIP = "township"
    VILLAGES = "villages"
    GRID = "grid"


class Notice(Model):
    """A public notice (通知公告) to the villagers of a township, some villages or one grid.

    Its deliveries are keyed `notice:<id>:<villager id>`, so each villager is queued once;
    `reported_at` is set when the poster was told how far it went.
    """

    id = fields.IntField(primary_key=True)
    township: fields.ForeignKeyRelation[Township] = fields.ForeignKeyField(
        "models.Township", related_name="notices", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(NoticeKind, max_length=16)
    title = fields.CharField(max_length=100)
    body = fields.TextField()
    photos: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    document = fields.CharField(max_length=255, null=True, description="Telegram file id")
    document_name = fields.CharField(max_length=255, null=True)
    audience = fields.CharEnumField(Audience, max_length=16)
    village_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]
    grid: fields.ForeignKeyNullableRelation[Grid] = fields.ForeignKeyField(
        "models.Grid", related_name="notices", null=True, on_delete=fields.RESTRICT
    )
    poster: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="notices", on_delete=fields.RESTRICT
    )
    reach = fields.IntField(default=0)
    created_at = fields.DatetimeField()
    reported_at = fields.DatetimeField(null=True)
    withdrawn_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notice"
        indexes = (("township_id", "created_at"),)
