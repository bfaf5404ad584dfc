"""A township's directory as one YAML file: its schema, validation, import and export.

The file is what an administrator edits; the database follows it. Validation reports every
problem at once, each with its place in the file, because the person fixing it edits a file,
not a traceback. Import is an idempotent upsert keyed by (township code, entity code) in one
transaction: rows that leave the file are deactivated, never deleted, since cases keep pointing
at them, and a second import of the same file writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot import cache
from bot.i18n import N_, catalogs
from bot.languages import LANGUAGES, ZH_HANS
from bot.models import (
    NOTICE_ROLES,
    Account,
    Category,
    FaqEntry,
    FaqStatus,
    Grid,
    Level,
    Official,
    Robot,
    RobotKind,
    Role,
    Township,
    Unit,
    UnitKind,
    Village,
)
from bot.worktime import DEFAULT_OFFICE_HOURS, parse_office_hours

DEFAULT_TIMEZONE = "Asia/Shanghai"
NAME_MAX = 100
#: A FAQ question, an answer, a keyword (bot.faq).
QUESTION_MAX = 500
ANSWER_MAX = 2000
KEYWORD_MAX = 50
INT64_MAX = 2**63 - 1
_CODE = re.compile(r"[a-z0-9_-]{1,32}")
_TOWNSHIP_CODE = re.compile(r"[A-Z]{1,8}")
_NUMBER = re.compile(r"\+?[0-9][0-9-]*")
_NUMBER_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
#: A robot's webhook may be plain http only on this machine (a stand-in, in tests).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
URL_MAX = 500
SECRET_MAX = 200
#: Emergency numbers the bot knows by name, in the order they are shown; other keys follow.
EMERGENCY_KEYS = ("fire", "ambulance", "police")

#: Units that live inside one village, and so must name it.
VILLAGE_KINDS = frozenset({UnitKind.GRID, UnitKind.VILLAGE, UnitKind.TOWNSHIP_TEAM})
#: Units a township-level category may name.
TOWNSHIP_KINDS = frozenset(
    {UnitKind.TOWNSHIP_TEAM, UnitKind.TOWNSHIP_OFFICE, UnitKind.DEPARTMENT}
)
#: Units outside every village: the only ones a confidential category may go to.
CONFIDENTIAL_KINDS = frozenset({UnitKind.TOWNSHIP_OFFICE, UnitKind.DEPARTMENT})


@dataclass(frozen=True)
class Problem:
    """One mistake in a directory file: where it is, and what, as a catalog message with its
    values, so that the command line and the back office each say it in their reader's words.

    `where` is a path in the file (`units[3].supervisor`), kept as written since the reader
    finds it in the file; `line` is set instead for a file that is not YAML at all.
    """

    where: str
    message: str
    values: Mapping[str, object] = field(default_factory=dict)
    line: int | None = None

    def place(self, language: str | None = None) -> str:
        if self.line is not None:
            return _say(WHERE_LINE, language, number=self.line)
        return _say(WHERE_FILE, language) if self.where == FILE else self.where

    def text(self, language: str | None = None) -> str:
        """What is wrong, in `language`; None is the English of the message ids."""
        return _say(self.message, language, **self.values)

    def render(self, language: str | None = None) -> str:
        return f"{self.place(language)}: {self.text(language)}"

    def __str__(self) -> str:
        return self.render()


def _say(message: str, language: str | None, **values: object) -> str:
    if language is None:
        return message.format(**values) if values else message
    return catalogs().text(message, language, **values)


FILE = "file"
WHERE_FILE = N_("file")
WHERE_LINE = N_("line {number}")


class DirectoryError(Exception):
    """A directory file that cannot be imported; `placed` lists every reason, each placed.

    `problems` are the same in English, one line each (logs, `str()`); `lines(language)` in
    the reader's language.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.placed = problems
        self.problems = [problem.render() for problem in problems]
        super().__init__("\n".join(self.problems))

    def lines(self, language: str | None) -> list[str]:
        return [problem.render(language) for problem in self.placed]


#: The first line of a refused import; the problems follow, one a line.
NOT_VALID = N_("{file} is not valid; nothing was changed:")


class Wrong(ValueError):
    """A field check's refusal as a catalog message; `str()` is its English."""

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(_say(message, None, **values))
        self.message = message
        self.values = values


# ---------------------------------------------------------------------------------------------
# The schema. Field checks live here so that pydantic reports them with their path; checks that
# look across entries (references, duplicates, routing) run afterwards in `_Checker`.


def _code(value: str) -> str:
    if not _CODE.fullmatch(value):
        raise Wrong(N_("must be 1-32 characters of a-z, 0-9, '_' and '-'"))
    return value


def _township_code(value: str) -> str:
    if not _TOWNSHIP_CODE.fullmatch(value):
        raise Wrong(N_("must be 1-8 capital letters"))
    return value


def _name(value: str) -> str:
    value = value.strip()
    if not value:
        raise Wrong(N_("must not be empty"))
    if len(value) > NAME_MAX:
        raise Wrong(N_("must be at most {limit} characters"), limit=NAME_MAX)
    return value


def _names(value: dict[str, str]) -> dict[str, str]:
    unknown = [key for key in value if key not in LANGUAGES]
    if unknown:
        raise Wrong(
            N_("unknown language {code} (use {languages})"),
            code=repr(unknown[0]), languages=", ".join(LANGUAGES),
        )
    return value


def _text(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise Wrong(N_("must not be empty"))
        if len(value) > limit:
            raise Wrong(N_("must be at most {limit} characters"), limit=limit)
        return value

    return check


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise Wrong(N_("must be one of {choices}"), choices=", ".join(LANGUAGES))
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise Wrong(
            N_("unknown time zone {zone} (e.g. {example})"), zone=repr(value),
            example=DEFAULT_TIMEZONE,
        ) from None
    return value


def _quoted(value: object) -> object:
    # YAML reads 119 as a number and 0591 as octal: numbers must be written as quoted text.
    if isinstance(value, int) and not isinstance(value, bool):
        raise Wrong(N_('write it in quotes, e.g. "{value}"'), value=value)
    return value


def _number(value: str) -> str:
    if not _NUMBER.fullmatch(value) or len(value) > 32:
        raise Wrong(N_("must be digits, with an optional leading '+' and '-' separators"))
    return value


def _number_key(value: str) -> str:
    if not _NUMBER_KEY.fullmatch(value):
        raise Wrong(
            N_("unknown key {key}: use {keys} or another lowercase word"), key=repr(value),
            keys=", ".join(EMERGENCY_KEYS),
        )
    return value


def _positive(value: int) -> int:
    if value <= 0:
        raise Wrong(N_("must be a positive whole number"))
    return value


def _telegram_id(value: int) -> int:
    if not 0 < value <= INT64_MAX:
        raise Wrong(N_("must be a positive Telegram user id"))
    return value


def _group_chat_id(value: int) -> int:
    if not -INT64_MAX <= value < 0:
        raise Wrong(N_("must be a negative Telegram chat id (a group or channel)"))
    return value


def _robot_url(value: str) -> str:
    """https only: the webhook's address is its key. http is for a stand-in on loopback."""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or len(value) > URL_MAX:
        raise Wrong(N_("must be the robot's webhook address, https://..."))
    if parts.scheme != "https" and not (
        parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    ):
        raise Wrong(N_("must start with https:// (http:// only on 127.0.0.1)"))
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise Wrong(N_("must be the name of an environment variable, like DINGTALK_SECRET"))
    return value


def _secret(value: str) -> str:
    if not value.strip() or len(value) > SECRET_MAX:
        raise Wrong(N_("must be the secret the app shows, at most {count} characters"),
                    count=SECRET_MAX)
    return value


def _not_empty(message: str) -> Callable[[list[Any]], list[Any]]:
    def check(value: list[Any]) -> list[Any]:
        if not value:
            raise Wrong(message)
        return value

    return check


Code = Annotated[StrictStr, AfterValidator(_code)]
Name = Annotated[StrictStr, AfterValidator(_name)]
Names = Annotated[dict[StrictStr, Name], AfterValidator(_names)]
PhoneNumber = Annotated[StrictStr, BeforeValidator(_quoted), AfterValidator(_number)]
Hours = Annotated[StrictInt, AfterValidator(_positive)]
GroupChatId = Annotated[StrictInt, AfterValidator(_group_chat_id)]
TelegramId = Annotated[StrictInt, AfterValidator(_telegram_id)]
Question = Annotated[StrictStr, AfterValidator(_text(QUESTION_MAX))]
Answer = Annotated[StrictStr, AfterValidator(_text(ANSWER_MAX))]
Keyword = Annotated[StrictStr, AfterValidator(_text(KEYWORD_MAX))]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _office_hours(value: str) -> str:
    try:
        parse_office_hours(value)
    except ValueError as error:
        raise Wrong(
            N_("must be times like {example}: {detail}"), example=DEFAULT_OFFICE_HOURS,
            detail=str(error),
        ) from None
    return value


def _notice_roles(value: list[Role]) -> list[Role]:
    if not value:
        raise Wrong(N_("must name at least one role"))
    if len(set(value)) != len(value):
        raise Wrong(N_("names a role twice"))
    return value


class CalendarSpec(_Spec):
    # Counted by categories with `working_hours: true` (see bot.worktime).
    office_hours: Annotated[StrictStr, AfterValidator(_office_hours)] = DEFAULT_OFFICE_HOURS
    days_off: list[date] = Field(default_factory=list)
    working_days: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarSpec:
        both = sorted(set(self.days_off) & set(self.working_days))
        if both:
            raise Wrong(N_("{day} is both a day off and a working day"), day=both[0].isoformat())
        return self


class RobotSpec(_Spec):
    """A group robot (群机器人) of WeCom, DingTalk or Feishu: its webhook address, and for
    DingTalk's 加签 and Feishu's 签名校验 the secret, or the environment variable holding it."""

    kind: RobotKind
    url: Annotated[StrictStr, AfterValidator(_robot_url)]
    secret: Annotated[StrictStr, AfterValidator(_secret)] | None = None
    secret_env: Annotated[StrictStr, AfterValidator(_env_name)] | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> RobotSpec:
        if self.secret is not None and self.secret_env is not None:
            raise Wrong(N_("give secret or secret_env, not both"))
        if self.kind == RobotKind.WECOM and (self.secret or self.secret_env):
            raise Wrong(N_("a WeCom robot takes no secret: its key is in the url"))
        return self


class TownshipSpec(_Spec):
    code: Annotated[StrictStr, AfterValidator(_township_code)]
    name: Name
    names: Names = Field(default_factory=dict)
    #: None: the zone the import is given (the TIMEZONE setting).
    timezone: Annotated[StrictStr, AfterValidator(_timezone)] | None = None
    #: Of its group chats and channel; the DEFAULT_LANGUAGE setting when not given.
    language: Annotated[StrictStr, AfterValidator(_language)] | None = None
    digest_chat_id: GroupChatId | None = None
    emergency_numbers: dict[Annotated[StrictStr, AfterValidator(_number_key)], PhoneNumber] = (
        Field(default_factory=dict)
    )
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    #: Which roles may post public notices (通知公告).
    notice_roles: Annotated[list[Role], AfterValidator(_notice_roles)] = Field(
        default_factory=lambda: [Role(role) for role in NOTICE_ROLES]
    )
    #: Group robots of WeCom, DingTalk or Feishu that get the digest, the red/grey list and
    #: the repeat-problem warnings (bot.robots).
    robots: list[RobotSpec] = Field(default_factory=list)


class GridSpec(_Spec):
    code: Code
    name: Name
    names: Names = Field(default_factory=dict)


class VillageSpec(_Spec):
    code: Code
    name: Name
    names: Names = Field(default_factory=dict)
    grids: list[GridSpec] = Field(default_factory=list)


class UnitSpec(_Spec):
    code: Code
    name: Name
    names: Names = Field(default_factory=dict)
    kind: UnitKind
    village: Code | None = None
    grid: Code | None = None
    group_chat_id: GroupChatId | None = None
    supervisor: Code | None = None
    #: Group robots that get what the unit's group chat gets of supervision (bot.robots).
    robots: list[RobotSpec] = Field(default_factory=list)


class CategorySpec(_Spec):
    """A second-level category: the one a villager picks, carrying the handling rules."""

    code: Code
    name: Name
    names: Names = Field(default_factory=dict)
    level: Level
    unit: Code | None = None
    accept_hours: Hours
    resolve_hours: Hours
    working_hours: StrictBool = False
    emergency: StrictBool = False
    confidential: StrictBool = False
    #: 政策咨询: policy questions the FAQ did not answer become cases of this category.
    policy: StrictBool = False


class CategoryGroupSpec(_Spec):
    """A first-level category: only a heading for its children."""

    code: Code
    name: Name
    names: Names = Field(default_factory=dict)
    children: Annotated[
        list[CategorySpec], AfterValidator(_not_empty(N_("needs at least one child")))
    ]


class OfficialSpec(_Spec):
    code: Code
    name: Name
    names: Names = Field(default_factory=dict)
    role: Role
    units: Annotated[list[Code], AfterValidator(_not_empty(N_("needs at least one unit")))]
    phone: PhoneNumber | None = None
    telegram_id: TelegramId | None = None


class FaqSpec(_Spec):
    """A township FAQ entry: `question`/`answer` in the township's language, translations in
    `questions`/`answers` (as `name`/`names`), and keywords that match it in any language."""

    code: Code
    question: Question
    questions: Annotated[dict[StrictStr, Question], AfterValidator(_names)] = Field(
        default_factory=dict
    )
    answer: Answer
    answers: Annotated[dict[StrictStr, Answer], AfterValidator(_names)] = Field(
        default_factory=dict
    )
    keywords: list[Keyword] = Field(default_factory=list)


class DirectoryFile(_Spec):
    """One township's directory, as read from its file and checked."""

    township: TownshipSpec
    villages: list[VillageSpec] = Field(default_factory=list)
    units: list[UnitSpec] = Field(default_factory=list)
    categories: list[CategoryGroupSpec] = Field(default_factory=list)
    officials: list[OfficialSpec] = Field(default_factory=list)
    faq: list[FaqSpec] = Field(default_factory=list)

    def leaves(self) -> Iterable[tuple[CategoryGroupSpec, CategorySpec]]:
        for group in self.categories:
            for child in group.children:
                yield group, child


_SECTIONS: dict[str, type[_Spec]] = {
    "villages": VillageSpec,
    "units": UnitSpec,
    "categories": CategoryGroupSpec,
    "officials": OfficialSpec,
    "faq": FaqSpec,
}

# ---------------------------------------------------------------------------------------------
# Reading and checking.


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping instead of keeping the last."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    def __init__(self, key: str, mark: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key}", mark)
        self.key = key


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` may be overridden by the keys written next to it
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping below reports it
        if duplicate:
            raise _DuplicateKey(repr(key), key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        if isinstance(error, _DuplicateKey):
            problem = Problem(FILE, N_("duplicate key {key}"), {"key": error.key}, line=line)
        else:
            problem = Problem(
                FILE, N_("not valid YAML: {detail}"), {"detail": error.problem or error.context},
                line=line,
            )
        raise DirectoryError([problem]) from None
    except yaml.YAMLError as error:
        raise DirectoryError(
            [Problem(FILE, N_("not valid YAML: {detail}"), {"detail": str(error)})]
        ) from None


def _path(prefix: str, loc: Iterable[int | str]) -> str:
    path = prefix
    for part in loc:
        if part == "[key]":
            continue  # pydantic's marker for "the key itself", already named by the path
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "file"


MISSING = N_("missing")
UNKNOWN_FIELD = N_("unknown field")
MUST_BE_A_LIST = N_("must be a list")
MUST_BE_A_MAPPING = N_("must be a mapping")
MUST_BE_A_DATE = N_("must be a date like 2026-10-08")
_MESSAGES = {
    "missing": MISSING,
    "extra_forbidden": UNKNOWN_FIELD,
    "string_type": N_("must be text"),
    "int_type": N_("must be a whole number"),
    "bool_type": N_("must be true or false"),
    "list_type": MUST_BE_A_LIST,
    "dict_type": MUST_BE_A_MAPPING,
    "model_type": MUST_BE_A_MAPPING,
    "model_attributes_type": MUST_BE_A_MAPPING,
    "date_type": MUST_BE_A_DATE,
    "date_parsing": MUST_BE_A_DATE,
    "date_from_datetime_parsing": MUST_BE_A_DATE,
    "date_from_datetime_inexact": MUST_BE_A_DATE,
}


def _pydantic_problems(prefix: str, error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        kind = item["type"]
        where = _path(prefix, item["loc"])
        cause = item.get("ctx", {}).get("error")
        if kind == "value_error" and isinstance(cause, Wrong):
            problem = Problem(where, cause.message, cause.values)
        elif kind == "enum":
            problem = Problem(
                where, N_("must be one of {choices}"), {"choices": item["ctx"]["expected"]}
            )
        elif kind in _MESSAGES:
            problem = Problem(where, _MESSAGES[kind])
        else:  # a check pydantic makes that the file format does not name: its own words
            problem = Problem(where, N_("not valid: {detail}"), {"detail": item["msg"]})
        problems.append(problem)
    return problems


def _raw_code(item: object) -> str | None:
    code = item.get("code") if isinstance(item, dict) else None
    return code if isinstance(code, str) else None


ALSO_USED = N_("{code} also used by {other}")
UNKNOWN_VILLAGE = N_("unknown village {code}")
UNKNOWN_GRID = N_("unknown grid {code}")
UNKNOWN_UNIT = N_("unknown unit {code}")
UNKNOWN_CATEGORY = N_("unknown category {code}")
UNKNOWN_OFFICIAL = N_("unknown official {code}")
REQUIRED_FOR_KIND = N_("required for kind {kind}")
NOT_ALLOWED_FOR_KIND = N_("not allowed for kind {kind}")


@dataclass
class _Namespace:
    """The codes of one kind of entry: every code written, valid entry or not, and the valid.

    A reference to a code whose entry is broken is not reported again: the entry already is.
    """

    unknown: str  # the message for a reference to a code never written
    written: set[str] = field(default_factory=set)
    valid: dict[str, Any] = field(default_factory=dict)


class _Checker:
    """Validates entries one by one, then checks what lies between them."""

    def __init__(self, data: Any) -> None:
        self.problems: list[Problem] = []
        self.data = data
        self.township: TownshipSpec | None = None
        self.villages: list[tuple[int, VillageSpec]] = []
        self.units: list[tuple[int, UnitSpec]] = []
        self.groups: list[tuple[int, CategoryGroupSpec]] = []
        self.officials: list[tuple[int, OfficialSpec]] = []
        self.faq: list[tuple[int, FaqSpec]] = []
        self.sections: dict[str, list[Any]] = {}
        self.all_units_valid = True
        self.village_codes = _Namespace(UNKNOWN_VILLAGE)
        self.unit_codes = _Namespace(UNKNOWN_UNIT)
        #: (kind, village code, grid code) -> the path of the unit covering it
        self.covering: dict[tuple[UnitKind, str, str | None], str] = {}
        #: the first leaf that needs a village unit in every village, or a township team
        self.needs_village_unit: str | None = None
        self.needs_team: str | None = None

    def problem(self, where: str, message: str, **values: object) -> None:
        self.problems.append(Problem(where, message, values))

    def run(self) -> DirectoryFile:
        data = self.data
        if data is None:
            raise DirectoryError([Problem(FILE, N_("empty"))])
        if not isinstance(data, dict):
            raise DirectoryError([Problem(FILE, N_(
                "must be a mapping with township, villages, units, categories, officials"
            ))])
        for key in data:
            if key != "township" and key not in _SECTIONS:
                self.problem(str(key), UNKNOWN_FIELD)
        self._structure()
        self._villages()
        self._units()
        self._robots()
        self._categories()
        self._officials()
        self._faq()
        if self.problems:
            raise DirectoryError(self.problems)
        assert self.township is not None
        return DirectoryFile(
            township=self.township,
            villages=[spec for _, spec in self.villages],
            units=[spec for _, spec in self.units],
            categories=[spec for _, spec in self.groups],
            officials=[spec for _, spec in self.officials],
            faq=[spec for _, spec in self.faq],
        )

    def _structure(self) -> None:
        if "township" not in self.data:
            self.problem("township", MISSING)
        else:
            try:
                self.township = TownshipSpec.model_validate(self.data["township"])
            except ValidationError as error:
                self.problems += _pydantic_problems("township", error)
        targets: dict[str, list[tuple[int, Any]]] = {
            "villages": self.villages,
            "units": self.units,
            "categories": self.groups,
            "officials": self.officials,
            "faq": self.faq,
        }
        for section, spec in _SECTIONS.items():
            items = self.data.get(section)
            if items is None:
                items = []
            if not isinstance(items, list):
                self.problem(section, MUST_BE_A_LIST)
                items = []
            self.sections[section] = items
            for index, item in enumerate(items):
                try:
                    targets[section].append((index, spec.model_validate(item)))
                except ValidationError as error:
                    self.problems += _pydantic_problems(f"{section}[{index}]", error)
                    if section == "units":
                        self.all_units_valid = False

    def _namespace(
        self, unknown: str, entries: Iterable[tuple[str, object]], valid: Iterable[tuple[str, Any]]
    ) -> _Namespace:
        """Duplicates among every written code; the first valid entry of each code."""
        namespace = _Namespace(unknown)
        first: dict[str, str] = {}
        for path, item in entries:
            code = _raw_code(item)
            if code is None:
                continue
            if code in first:
                self.problem(f"{path}.code", ALSO_USED, code=repr(code), other=first[code])
            else:
                first[code] = path
            namespace.written.add(code)
        for path, spec in valid:
            if first.get(spec.code) == path:
                namespace.valid[spec.code] = spec
        return namespace

    def _resolve(self, path: str, code: str, namespace: _Namespace) -> Any | None:
        """The valid entry a reference names; unknown codes are problems, invalid ones not."""
        if code in namespace.valid:
            return namespace.valid[code]
        if code not in namespace.written:
            self.problem(path, namespace.unknown, code=repr(code))
        return None

    def _villages(self) -> None:
        raw = self.sections["villages"]
        self.village_codes = self._namespace(
            UNKNOWN_VILLAGE,
            ((f"villages[{i}]", item) for i, item in enumerate(raw)),
            ((f"villages[{i}]", spec) for i, spec in self.villages),
        )
        for i, item in enumerate(raw):
            grids = item.get("grids") if isinstance(item, dict) else None
            if isinstance(grids, list):
                self._namespace(
                    UNKNOWN_GRID,
                    ((f"villages[{i}].grids[{k}]", g) for k, g in enumerate(grids)),
                    (),
                )

    def _units(self) -> None:
        self.unit_codes = self._namespace(
            UNKNOWN_UNIT,
            ((f"units[{i}]", item) for i, item in enumerate(self.sections["units"])),
            ((f"units[{i}]", spec) for i, spec in self.units),
        )
        covering = self.covering
        for i, unit in self.units:
            path = f"units[{i}]"
            kind = unit.kind
            village: VillageSpec | None = None
            if kind in VILLAGE_KINDS:
                if unit.village is None:
                    self.problem(f"{path}.village", REQUIRED_FOR_KIND, kind=str(kind))
                else:
                    village = self._resolve(f"{path}.village", unit.village, self.village_codes)
            elif unit.village is not None:
                self.problem(f"{path}.village", NOT_ALLOWED_FOR_KIND, kind=str(kind))
            if kind == UnitKind.GRID:
                if unit.grid is None:
                    self.problem(f"{path}.grid", REQUIRED_FOR_KIND, kind=str(kind))
                elif village is not None and unit.grid not in {g.code for g in village.grids}:
                    self.problem(
                        f"{path}.grid", N_("unknown grid {grid} in village {village}"),
                        grid=repr(unit.grid), village=repr(village.code),
                    )
            elif unit.grid is not None:
                self.problem(f"{path}.grid", NOT_ALLOWED_FOR_KIND, kind=str(kind))
            if village is not None and (kind != UnitKind.GRID or unit.grid is not None):
                key = (kind, village.code, unit.grid if kind == UnitKind.GRID else None)
                if key in covering:
                    where = "grid" if kind == UnitKind.GRID else "village"
                    self.problem(
                        f"{path}.{where}", N_("already covered by {other} of kind {kind}"),
                        other=covering[key], kind=str(kind),
                    )
                else:
                    covering[key] = path
            self._supervisor(path, unit)
        self._cycles()

    def _robots(self) -> None:
        """One webhook, one place in the file: listed twice, its group would get it all twice."""
        owners: list[tuple[str, list[RobotSpec]]] = []
        if self.township is not None:
            owners.append(("township.robots", self.township.robots))
        owners += [(f"units[{i}].robots", unit.robots) for i, unit in self.units]
        seen: dict[str, str] = {}
        for prefix, robots in owners:
            for k, robot in enumerate(robots):
                path = f"{prefix}[{k}].url"
                if robot.url in seen:
                    self.problem(path, N_("also used by {other}"), other=seen[robot.url])
                else:
                    seen[robot.url] = path

    def _supervisor(self, path: str, unit: UnitSpec) -> None:
        kind = unit.kind
        if unit.supervisor is None:
            if kind in (UnitKind.GRID, UnitKind.VILLAGE):
                self.problem(f"{path}.supervisor", REQUIRED_FOR_KIND, kind=str(kind))
            return
        if unit.supervisor == unit.code:
            self.problem(f"{path}.supervisor", N_("a unit cannot supervise itself"))
            return
        boss: UnitSpec | None = self._resolve(
            f"{path}.supervisor", unit.supervisor, self.unit_codes
        )
        if boss is None or unit.village is None:
            return
        if kind == UnitKind.GRID and not (
            boss.kind == UnitKind.VILLAGE and boss.village == unit.village
        ):
            self.problem(
                f"{path}.supervisor", N_("must be the unit of kind village of {village}"),
                village=repr(unit.village),
            )
        if kind == UnitKind.VILLAGE and not (
            boss.kind == UnitKind.TOWNSHIP_OFFICE
            or (boss.kind == UnitKind.TOWNSHIP_TEAM and boss.village == unit.village)
        ):
            self.problem(
                f"{path}.supervisor",
                N_("must be the township team of {village} or a township office"),
                village=repr(unit.village),
            )

    def _cycles(self) -> None:
        index = {spec.code: (i, spec) for i, spec in self.units}
        reported: set[str] = set()
        for _, start in self.units:
            chain: list[str] = []
            code: str | None = start.code
            while code is not None and code in index and code not in chain:
                chain.append(code)
                code = index[code][1].supervisor
            if code is None or code not in chain:
                continue
            cycle = chain[chain.index(code):]
            if len(cycle) < 2 or reported.intersection(cycle):
                continue  # a self-supervising unit is reported on its own
            reported.update(cycle)
            first = min(cycle, key=lambda c: index[c][0])
            at = cycle.index(first)
            ordered = [*cycle[at:], *cycle[:at], first]
            self.problem(
                f"units[{index[first][0]}].supervisor", N_("supervision cycle {cycle}"),
                cycle=" -> ".join(ordered),
            )

    def _categories(self) -> None:
        entries: list[tuple[str, object]] = []
        valid: list[tuple[str, Any]] = []
        for i, item in enumerate(self.sections["categories"]):
            entries.append((f"categories[{i}]", item))
            children = item.get("children") if isinstance(item, dict) else None
            if isinstance(children, list):
                entries += [(f"categories[{i}].children[{k}]", c) for k, c in enumerate(children)]
        for i, group in self.groups:
            valid.append((f"categories[{i}]", group))
            valid += [(f"categories[{i}].children[{k}]", c) for k, c in enumerate(group.children)]
        self._namespace(UNKNOWN_CATEGORY, entries, valid)
        for i, group in self.groups:
            for k, leaf in enumerate(group.children):
                self._leaf(f"categories[{i}].children[{k}]", leaf)
        self._policy()
        self._coverage()

    def _faq(self) -> None:
        self._namespace(
            N_("unknown FAQ entry {code}"),
            [(f"faq[{i}]", item) for i, item in enumerate(self.sections["faq"])],
            [(f"faq[{i}]", spec) for i, spec in self.faq],
        )

    def _policy(self) -> None:
        """One policy-question category at most: a question must know where it goes."""
        first: str | None = None
        for i, group in self.groups:
            for k, leaf in enumerate(group.children):
                if not leaf.policy:
                    continue
                path = f"categories[{i}].children[{k}]"
                if first is not None:
                    self.problem(
                        f"{path}.policy", N_("only one policy category; {other} is one already"),
                        other=first,
                    )
                elif leaf.emergency or leaf.confidential:
                    self.problem(
                        f"{path}.policy",
                        N_("a policy category cannot be emergency or confidential"),
                    )
                first = first or path

    def _leaf(self, path: str, leaf: CategorySpec) -> None:
        if leaf.resolve_hours < leaf.accept_hours:
            self.problem(
                f"{path}.resolve_hours", N_("must be at least accept_hours ({hours})"),
                hours=leaf.accept_hours,
            )
        level = leaf.level
        unit: UnitSpec | None = None
        if leaf.unit is not None:
            unit = self._resolve(f"{path}.unit", leaf.unit, self.unit_codes)
        if leaf.confidential:
            if level in (Level.GRID, Level.VILLAGE):
                self.problem(f"{path}.level", N_(
                    "a confidential category is handled at township or department level"
                ))
            if leaf.unit is None:
                self.problem(f"{path}.unit", N_("required for a confidential category"))
            elif unit is not None and unit.kind not in CONFIDENTIAL_KINDS:
                self.problem(f"{path}.unit", N_(
                    "a confidential category goes to a township_office or department unit,"
                    " not {kind}"
                ), kind=str(unit.kind))
        if level == Level.DEPARTMENT:
            if leaf.unit is None:
                if not leaf.confidential:
                    self.problem(f"{path}.unit", N_("required for level department"))
            elif unit is not None and unit.kind != UnitKind.DEPARTMENT:
                self.problem(f"{path}.unit", N_(
                    "level department needs a unit of kind department, not {kind}"
                ), kind=str(unit.kind))
        elif level == Level.TOWNSHIP:
            if leaf.unit is None:
                if not leaf.confidential:
                    self.needs_team = self.needs_team or path
            elif (
                unit is not None and unit.kind not in TOWNSHIP_KINDS and not leaf.confidential
            ):
                self.problem(f"{path}.unit", N_(
                    "level township needs a township_team, township_office or department unit,"
                    " not {kind}"
                ), kind=str(unit.kind))
        elif not leaf.confidential:
            self.needs_village_unit = self.needs_village_unit or path
            if leaf.unit is not None:
                self.problem(f"{path}.unit", N_("not allowed for level {level}"), level=str(level))

    def _coverage(self) -> None:
        if not self.all_units_valid:
            return  # a broken unit entry may be the one that covers a village
        for i, village in self.villages:
            if self.needs_village_unit and (UnitKind.VILLAGE, village.code, None) not in (
                self.covering
            ):
                self.problem(f"villages[{i}]", N_(
                    "needs a unit of kind village ({category} is handled at grid or village"
                    " level)"
                ), category=self.needs_village_unit)
            if self.needs_team and (UnitKind.TOWNSHIP_TEAM, village.code, None) not in (
                self.covering
            ):
                self.problem(f"villages[{i}]", N_(
                    "needs a unit of kind township_team ({category} is handled at township"
                    " level without a unit)"
                ), category=self.needs_team)

    def _officials(self) -> None:
        self._namespace(
            UNKNOWN_OFFICIAL,
            ((f"officials[{i}]", item) for i, item in enumerate(self.sections["officials"])),
            (),
        )
        telegram_ids: dict[int, str] = {}
        for i, official in self.officials:
            path = f"officials[{i}]"
            listed: set[str] = set()
            for k, code in enumerate(official.units):
                if code in listed:
                    self.problem(f"{path}.units[{k}]", N_("{code} listed twice"), code=repr(code))
                listed.add(code)
                self._resolve(f"{path}.units[{k}]", code, self.unit_codes)
            if official.telegram_id is not None:
                if official.telegram_id in telegram_ids:
                    self.problem(
                        f"{path}.telegram_id", N_("also used by {other}"),
                        other=telegram_ids[official.telegram_id],
                    )
                else:
                    telegram_ids[official.telegram_id] = path


def validate_directory(data: Any) -> DirectoryFile:
    """Check parsed YAML (plain dicts and lists); raises `DirectoryError` with every problem."""
    return _Checker(data).run()


def load_directory(text_or_path: str | Path) -> DirectoryFile:
    """Read a directory: a `Path` is a file to open, a `str` is the YAML text itself."""
    if isinstance(text_or_path, Path):
        try:
            text = decode(text_or_path.read_bytes())
        except OSError as error:
            raise DirectoryError(
                [Problem(FILE, N_("cannot be read ({detail})"), {"detail": str(error)})]
            ) from None
    else:
        text = text_or_path
    return validate_directory(_parse_yaml(text))


def decode(data: bytes) -> str:
    """A file's bytes as text: a directory file is UTF-8, else `DirectoryError`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DirectoryError([Problem(FILE, N_("is not UTF-8 text"))]) from None


# ---------------------------------------------------------------------------------------------
# Import.


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deactivated: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)


@dataclass
class ImportReport:
    """What an import wrote, per kind of row; reactivated rows count as updated."""

    township: str
    townships: Counts = field(default_factory=Counts)
    villages: Counts = field(default_factory=Counts)
    grids: Counts = field(default_factory=Counts)
    units: Counts = field(default_factory=Counts)
    categories: Counts = field(default_factory=Counts)
    officials: Counts = field(default_factory=Counts)
    accounts: Counts = field(default_factory=Counts)
    faq: Counts = field(default_factory=Counts)
    robots: Counts = field(default_factory=Counts)

    def kinds(self) -> dict[str, Counts]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "township"}

    @property
    def changed(self) -> bool:
        return any(counts.changed for counts in self.kinds().values())

    def text(self, language: str | None = None) -> str:
        """One line saying what changed, in `language` (None: English)."""
        if not self.changed:
            return _say(N_("directory {township}: no changes"), language, township=self.township)
        parts = []
        for action, message in _ACTIONS.items():
            counted = [
                _say(N_("{kind} {count}"), language, kind=_say(_KINDS[kind], language),
                     count=getattr(counts, action))
                for kind, counts in self.kinds().items()
                if getattr(counts, action)
            ]
            if counted:
                parts.append(_say(message, language, counts=", ".join(counted)))
        return _say(
            N_("directory {township}: {changes}"), language, township=self.township,
            changes="; ".join(parts),
        )

    def __str__(self) -> str:
        return self.text()


_ACTIONS = {
    "created": N_("created {counts}"),
    "updated": N_("updated {counts}"),
    "deactivated": N_("deactivated {counts}"),
}
_KINDS = {
    "townships": N_("townships"),
    "villages": N_("villages"),
    "grids": N_("grids"),
    "units": N_("units"),
    "categories": N_("categories"),
    "officials": N_("officials"),
    "faq": N_("FAQ entries"),
    "robots": N_("group robots"),
    "accounts": N_("accounts"),
}


M = TypeVar("M", bound=Model)


class _Importer:
    """One import, inside one transaction: every query goes through `self.db`."""

    def __init__(
        self,
        directory: DirectoryFile,
        db: BaseDBAsyncClient,
        default_language: str,
        default_timezone: str,
    ) -> None:
        self.file = directory
        self.db = db
        self.default_language = default_language
        self.default_timezone = default_timezone
        self.report = ImportReport(township=directory.township.code)
        self.touched: set[tuple[str, int]] = set()

    async def _write(
        self, kind: str, model: type[M], row: M | None, wanted: Mapping[str, Any]
    ) -> M:
        """Create the row, or save exactly the fields that differ; count each row once."""
        counts: Counts = getattr(self.report, kind)
        if row is None:
            row = await model.create(using_db=self.db, **wanted)
            counts.created += 1
            self.touched.add((kind, row.pk))
            return row
        changed = [name for name, value in wanted.items() if getattr(row, name) != value]
        if changed:
            for name in changed:
                setattr(row, name, wanted[name])
            await row.save(using_db=self.db, update_fields=changed)
            if (kind, row.pk) not in self.touched:
                counts.updated += 1
                self.touched.add((kind, row.pk))
        return row

    async def _deactivate(self, kind: str, model: type[Model], rows: Iterable[Model]) -> None:
        ids = [row.pk for row in rows if row.active]  # type: ignore[attr-defined]
        if ids:
            await model.filter(id__in=ids).using_db(self.db).update(active=False)
            getattr(self.report, kind).deactivated += len(ids)

    async def run(self) -> ImportReport:
        township = await self._township()
        villages, grids = await self._villages(township)
        units = await self._units(township, villages, grids)
        await self._categories(township, units)
        await self._officials(township, units)
        await self._faq(township)
        await self._robots(township, units)
        if self.report.changed:  # memberships and deactivations are no row's save
            await cache.changed(self.db)
        return self.report

    async def _township(self) -> Township:
        spec = self.file.township
        row = await Township.get_or_none(code=spec.code, using_db=self.db)
        wanted = {
            "code": spec.code,
            "name": spec.name,
            "names": spec.names,
            "timezone": spec.timezone or self.default_timezone,
            "language": spec.language or self.default_language,
            "emergency_numbers": spec.emergency_numbers,
            "days_off": [day.isoformat() for day in spec.calendar.days_off],
            "working_days": [day.isoformat() for day in spec.calendar.working_days],
            "office_hours": spec.calendar.office_hours,
            "notice_roles": [str(role) for role in spec.notice_roles],
            "active": True,
        }
        # A chat id the file names wins; none leaves one bound in the chat alone (bot.bindings).
        if spec.digest_chat_id is not None or row is None or not row.digest_bound_in_chat:
            wanted["digest_chat_id"] = spec.digest_chat_id
            wanted["digest_bound_in_chat"] = False
        return await self._write("townships", Township, row, wanted)

    async def _villages(
        self, township: Township
    ) -> tuple[dict[str, Village], dict[tuple[str, str], Grid]]:
        existing = {
            row.code: row
            for row in await Village.filter(township_id=township.id).using_db(self.db)
        }
        existing_grids = {
            (row.village_id, row.code): row  # type: ignore[attr-defined]
            for row in await Grid.filter(village__township_id=township.id).using_db(self.db)
        }
        villages: dict[str, Village] = {}
        grids: dict[tuple[str, str], Grid] = {}
        for position, spec in enumerate(self.file.villages):
            village = await self._write(
                "villages",
                Village,
                existing.get(spec.code),
                {
                    "township_id": township.id,
                    "code": spec.code,
                    "name": spec.name,
                    "names": spec.names,
                    "position": position,
                    "active": True,
                },
            )
            villages[spec.code] = village
            for grid_position, grid_spec in enumerate(spec.grids):
                grid = await self._write(
                    "grids",
                    Grid,
                    existing_grids.get((village.id, grid_spec.code)),
                    {
                        "village_id": village.id,
                        "code": grid_spec.code,
                        "name": grid_spec.name,
                        "names": grid_spec.names,
                        "position": grid_position,
                        "active": True,
                    },
                )
                grids[spec.code, grid_spec.code] = grid
        await self._deactivate(
            "villages", Village, (row for code, row in existing.items() if code not in villages)
        )
        kept = {grid.pk for grid in grids.values()}
        await self._deactivate(
            "grids", Grid, (row for row in existing_grids.values() if row.pk not in kept)
        )
        return villages, grids

    async def _units(
        self,
        township: Township,
        villages: dict[str, Village],
        grids: dict[tuple[str, str], Grid],
    ) -> dict[str, Unit]:
        existing = {
            row.code: row for row in await Unit.filter(township_id=township.id).using_db(self.db)
        }
        units: dict[str, Unit] = {}

        def wanted(spec: UnitSpec) -> dict[str, Any]:
            village = villages[spec.village] if spec.village else None
            grid = grids[spec.village, spec.grid] if spec.village and spec.grid else None
            boss = units.get(spec.supervisor) if spec.supervisor else None
            out: dict[str, Any] = {
                "township_id": township.id,
                "code": spec.code,
                "name": spec.name,
                "names": spec.names,
                "kind": spec.kind,
                "village_id": village.id if village else None,
                "grid_id": grid.id if grid else None,
                "supervisor_id": boss.id if boss else None,
                "active": True,
            }
            row = existing.get(spec.code)
            # As the township's digest chat: the file's chat id wins, none leaves one bound in
            # the chat alone.
            if spec.group_chat_id is not None or row is None or not row.group_bound_in_chat:
                out["group_chat_id"] = spec.group_chat_id
                out["group_bound_in_chat"] = False
            return out

        # Supervisors may come later in the file: a second pass links what the first could not.
        for spec in self.file.units:
            fields_ = wanted(spec)
            if spec.supervisor and spec.supervisor not in units:
                fields_.pop("supervisor_id")
            units[spec.code] = await self._write("units", Unit, existing.get(spec.code), fields_)
        for spec in self.file.units:
            await self._write("units", Unit, units[spec.code], wanted(spec))
        await self._deactivate(
            "units", Unit, (row for code, row in existing.items() if code not in units)
        )
        return units

    async def _categories(self, township: Township, units: dict[str, Unit]) -> None:
        existing = {
            row.code: row
            # The township's task category is the bot's own (bot.tasks): no file names it.
            for row in await Category.filter(township_id=township.id, task=False).using_db(
                self.db
            )
        }
        kept: set[str] = set()
        for position, group in enumerate(self.file.categories):
            parent = await self._write(
                "categories",
                Category,
                existing.get(group.code),
                {
                    "township_id": township.id,
                    "code": group.code,
                    "parent_id": None,
                    "name": group.name,
                    "names": group.names,
                    "position": position,
                    "level": None,
                    "unit_id": None,
                    "accept_hours": None,
                    "resolve_hours": None,
                    "working_hours": False,
                    "emergency": False,
                    "confidential": False,
                    "policy": False,
                    "active": True,
                },
            )
            kept.add(group.code)
            for child_position, leaf in enumerate(group.children):
                await self._write(
                    "categories",
                    Category,
                    existing.get(leaf.code),
                    {
                        "township_id": township.id,
                        "code": leaf.code,
                        "parent_id": parent.id,
                        "name": leaf.name,
                        "names": leaf.names,
                        "position": child_position,
                        "level": leaf.level,
                        "unit_id": units[leaf.unit].id if leaf.unit else None,
                        "accept_hours": leaf.accept_hours,
                        "resolve_hours": leaf.resolve_hours,
                        "working_hours": leaf.working_hours,
                        "emergency": leaf.emergency,
                        "confidential": leaf.confidential,
                        "policy": leaf.policy,
                        "active": True,
                    },
                )
                kept.add(leaf.code)
        await self._deactivate(
            "categories", Category, (row for code, row in existing.items() if code not in kept)
        )

    async def _officials(self, township: Township, units: dict[str, Unit]) -> None:
        existing = {
            row.code: row
            for row in await Official.filter(township_id=township.id).using_db(self.db)
        }
        memberships: dict[int, set[int]] = {}
        for official_id, unit_id in await Official.filter(township_id=township.id).using_db(
            self.db
        ).values_list("id", "units__id"):
            memberships.setdefault(official_id, set())
            if unit_id is not None:
                memberships[official_id].add(unit_id)
        accounts = await self._accounts()
        units_by_id = {unit.id: unit for unit in units.values()}
        for spec in self.file.officials:
            wanted: dict[str, Any] = {
                "township_id": township.id,
                "code": spec.code,
                "name": spec.name,
                "names": spec.names,
                "role": spec.role,
                "phone": spec.phone,
                "active": True,
            }
            if spec.telegram_id is not None:
                # Without a telegram_id the binding made by an invitation is kept.
                wanted["account_id"] = accounts[spec.telegram_id].id
            row = await self._write("officials", Official, existing.get(spec.code), wanted)
            current = memberships.get(row.id, set())
            target = {units[code].id for code in spec.units}
            if current != target:
                if target - current:
                    missing = [units_by_id[unit_id] for unit_id in target - current]
                    await row.units.add(*missing, using_db=self.db)
                if current - target:
                    extra = await Unit.filter(id__in=current - target).using_db(self.db)
                    await row.units.remove(*extra, using_db=self.db)
                if ("officials", row.id) not in self.touched:
                    self.report.officials.updated += 1
                    self.touched.add(("officials", row.id))
        listed = {spec.code for spec in self.file.officials}
        await self._deactivate(
            "officials", Official, (row for code, row in existing.items() if code not in listed)
        )

    async def _faq(self, township: Township) -> None:
        """The file's entries; one approved in the back office and not in the file stays."""
        existing = {
            row.code: row
            for row in await FaqEntry.filter(township_id=township.id).using_db(self.db)
        }
        kept: set[str] = set()
        for position, spec in enumerate(self.file.faq):
            await self._write("faq", FaqEntry, existing.get(spec.code), {
                "township_id": township.id,
                "code": spec.code,
                "question": spec.question,
                "questions": spec.questions,
                "answer": spec.answer,
                "answers": spec.answers,
                "keywords": spec.keywords,
                "position": position,
                "status": FaqStatus.LIVE,
                "from_file": True,
                "active": True,
            })
            kept.add(spec.code)
        await self._deactivate("faq", FaqEntry, (
            row for code, row in existing.items() if code not in kept and row.from_file
        ))

    async def _robots(self, township: Township, units: dict[str, Unit]) -> None:
        """Keyed by owner and webhook address: a new address is a new robot, the old one is
        deactivated (the outbox keeps pointing at it)."""
        existing = {
            (row.unit_id, row.url): row  # type: ignore[attr-defined]
            for row in await Robot.filter(township_id=township.id).using_db(self.db)
        }
        owners: list[tuple[int | None, list[RobotSpec]]] = [(None, self.file.township.robots)]
        owners += [(units[spec.code].id, spec.robots) for spec in self.file.units]
        kept: set[int] = set()
        for unit_id, robots in owners:
            for position, spec in enumerate(robots):
                row = await self._write("robots", Robot, existing.get((unit_id, spec.url)), {
                    "township_id": township.id,
                    "unit_id": unit_id,
                    "kind": spec.kind,
                    "url": spec.url,
                    "secret": spec.secret,
                    "secret_env": spec.secret_env,
                    "position": position,
                    "active": True,
                })
                kept.add(row.pk)
        await self._deactivate(
            "robots", Robot, (row for row in existing.values() if row.pk not in kept)
        )

    async def _accounts(self) -> dict[int, Account]:
        """The accounts of the officials' telegram_ids, created for those never seen yet."""
        names = {o.telegram_id: o.name for o in self.file.officials if o.telegram_id is not None}
        if not names:
            return {}
        accounts = {
            account.id: account
            for account in await Account.filter(id__in=list(names)).using_db(self.db)
        }
        for telegram_id, name in names.items():
            if telegram_id not in accounts:
                accounts[telegram_id] = await Account.create(
                    using_db=self.db,
                    id=telegram_id,
                    first_name=name[:128],
                    language=self.default_language,
                )
                self.report.accounts.created += 1
        return accounts


async def import_directory(
    directory: DirectoryFile,
    *,
    default_language: str = ZH_HANS,
    default_timezone: str = DEFAULT_TIMEZONE,
) -> ImportReport:
    """Make the database say what the file says, all or nothing.

    `default_language` is for accounts the file creates, `default_timezone` for a township
    that names no zone: the DEFAULT_LANGUAGE and TIMEZONE settings.
    """
    # A DirectoryFile can be built in code as well as loaded: check the rules between entries.
    directory = validate_directory(directory.model_dump())
    async with in_transaction() as connection:
        return await _Importer(directory, connection, default_language, default_timezone).run()


async def import_text(
    text: str | bytes, *, default_language: str = ZH_HANS,
    default_timezone: str = DEFAULT_TIMEZONE, township: str | None = None,
) -> ImportReport:
    """Check and import a directory given as its YAML (an upload): as `import_file`.

    `township`: the only township code the file may have (an administrator's own).
    """
    directory = load_directory(decode(text) if isinstance(text, bytes) else text)
    if township is not None and directory.township.code != township:
        raise DirectoryError([Problem(
            "township.code", N_("must be {code}: the township whose directory this is"),
            {"code": township},
        )])
    return await import_directory(
        directory, default_language=default_language, default_timezone=default_timezone
    )


async def import_file(
    path: str | Path, *, default_language: str = ZH_HANS, default_timezone: str = DEFAULT_TIMEZONE
) -> ImportReport:
    """Load, check and import a directory file; raises `DirectoryError` and changes nothing."""
    return await import_directory(
        load_directory(Path(path)),
        default_language=default_language,
        default_timezone=default_timezone,
    )


# ---------------------------------------------------------------------------------------------
# Export.


def _named(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"code": row.code, "name": row.name}
    names = {language: row.names[language] for language in LANGUAGES if language in row.names}
    if names:
        out["names"] = names
    return out


def _township_dict(row: Township) -> dict[str, Any]:
    out = _named(row)
    # Always written: the file then means the same whatever TIMEZONE is where it is imported.
    out["timezone"] = row.timezone
    out["language"] = row.language
    if row.digest_chat_id is not None:
        out["digest_chat_id"] = row.digest_chat_id
    if row.emergency_numbers:
        keys = [key for key in EMERGENCY_KEYS if key in row.emergency_numbers]
        keys += sorted(key for key in row.emergency_numbers if key not in EMERGENCY_KEYS)
        out["emergency_numbers"] = {key: row.emergency_numbers[key] for key in keys}
    calendar: dict[str, Any] = {}
    if row.office_hours != DEFAULT_OFFICE_HOURS:
        calendar["office_hours"] = row.office_hours
    if row.days_off:
        calendar["days_off"] = [date.fromisoformat(day) for day in row.days_off]
    if row.working_days:
        calendar["working_days"] = [date.fromisoformat(day) for day in row.working_days]
    if calendar:
        out["calendar"] = calendar
    roles = row.notice_roles if row.notice_roles is not None else list(NOTICE_ROLES)
    if list(roles) != list(NOTICE_ROLES):
        out["notice_roles"] = list(roles)
    return out


def _robot_dict(row: Robot) -> dict[str, Any]:
    """As the file gave it: a secret from the environment is named, never written out."""
    out: dict[str, Any] = {"kind": row.kind.value, "url": row.url}
    if row.secret_env:
        out["secret_env"] = row.secret_env
    elif row.secret:
        out["secret"] = row.secret
    return out


async def export_directory(township_code: str) -> dict[str, Any]:
    """The active directory of a township in the file's structure, in import order."""
    township = await Township.get(code=township_code)
    villages = await Village.filter(township_id=township.id, active=True).order_by(
        "position", "id"
    )
    grids = await Grid.filter(village__township_id=township.id, active=True).order_by(
        "position", "id"
    )
    units = await Unit.filter(township_id=township.id, active=True).order_by("id")
    categories = await Category.filter(township_id=township.id, active=True, task=False).order_by(
        "position", "id"
    )
    officials = await Official.filter(township_id=township.id, active=True).order_by("id")
    faq = await FaqEntry.filter(
        township_id=township.id, active=True, status=FaqStatus.LIVE
    ).order_by("position", "id")
    memberships = await Official.filter(
        township_id=township.id, active=True, units__active=True
    ).order_by("id", "units__id").values_list("id", "units__code")

    village_codes = {row.id: row.code for row in villages}
    grid_codes = {row.id: row.code for row in grids}
    unit_codes = {row.id: row.code for row in units}
    robots = await Robot.filter(township_id=township.id, active=True).order_by("position", "id")

    village_list = []
    for village in villages:
        out = _named(village)
        village_grids = [_named(g) for g in grids if g.village_id == village.id]  # type: ignore[attr-defined]
        if village_grids:
            out["grids"] = village_grids
        village_list.append(out)

    unit_list = []
    for unit in units:
        out = _named(unit)
        out["kind"] = unit.kind.value
        if unit.village_id in village_codes:  # type: ignore[attr-defined]
            out["village"] = village_codes[unit.village_id]  # type: ignore[attr-defined]
        if unit.grid_id in grid_codes:  # type: ignore[attr-defined]
            out["grid"] = grid_codes[unit.grid_id]  # type: ignore[attr-defined]
        if unit.group_chat_id is not None:
            out["group_chat_id"] = unit.group_chat_id
        if unit.supervisor_id in unit_codes:  # type: ignore[attr-defined]
            out["supervisor"] = unit_codes[unit.supervisor_id]  # type: ignore[attr-defined]
        unit_robots = [_robot_dict(r) for r in robots if r.unit_id == unit.id]  # type: ignore[attr-defined]
        if unit_robots:
            out["robots"] = unit_robots
        unit_list.append(out)

    category_list = []
    for group in (row for row in categories if row.parent_id is None):  # type: ignore[attr-defined]
        children = []
        for leaf in (row for row in categories if row.parent_id == group.id):  # type: ignore[attr-defined]
            out = _named(leaf)
            out["level"] = leaf.level.value if leaf.level else None
            if leaf.unit_id in unit_codes:  # type: ignore[attr-defined]
                out["unit"] = unit_codes[leaf.unit_id]  # type: ignore[attr-defined]
            out["accept_hours"] = leaf.accept_hours
            out["resolve_hours"] = leaf.resolve_hours
            for flag in ("working_hours", "emergency", "confidential", "policy"):
                if getattr(leaf, flag):
                    out[flag] = True
            children.append(out)
        category_list.append({**_named(group), "children": children})

    official_units: dict[int, list[str]] = {}
    for official_id, code in memberships:
        official_units.setdefault(official_id, []).append(code)
    bound: set[int] = set()
    official_list = []
    for official in officials:
        out = _named(official)
        out["role"] = official.role.value
        out["units"] = official_units.get(official.id, [])
        if official.phone:
            out["phone"] = official.phone
        account_id = official.account_id  # type: ignore[attr-defined]
        # One person may hold two posts; the file names each telegram_id once and the
        # other posts keep their binding on import.
        if account_id is not None and account_id not in bound:
            out["telegram_id"] = account_id
            bound.add(account_id)
        official_list.append(out)

    township_dict = _township_dict(township)
    township_robots = [_robot_dict(r) for r in robots if r.unit_id is None]  # type: ignore[attr-defined]
    if township_robots:
        township_dict["robots"] = township_robots
    return {
        "township": township_dict,
        "villages": village_list,
        "units": unit_list,
        "categories": category_list,
        "officials": official_list,
        "faq": [_faq_dict(entry) for entry in faq],
    }


def _faq_dict(entry: FaqEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"code": entry.code, "question": entry.question}
    if questions := _translations(entry.questions):
        out["questions"] = questions
    out["answer"] = entry.answer
    if answers := _translations(entry.answers):
        out["answers"] = answers
    if entry.keywords:
        out["keywords"] = list(entry.keywords)
    return out


def _translations(texts: dict[str, str]) -> dict[str, str]:
    return {language: texts[language] for language in LANGUAGES if language in texts}


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML that keeps Chinese readable and fields in the file's order."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
