"""The directory file: validation with placed problems, idempotent import, export round trip."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tortoise import connections
from tortoise.exceptions import IntegrityError

from bot.directory import (
    DirectoryError,
    DirectoryFile,
    dump_yaml,
    export_directory,
    import_directory,
    import_file,
    load_directory,
)
from bot.invitations import invite, redeem
from bot.models import Account, Category, Grid, Official, Township, Unit, Village

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "directory.yaml"

Data = dict[str, Any]


def example() -> Data:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def problems(data: Data | str) -> list[str]:
    text = data if isinstance(data, str) else dump_yaml(data)
    with pytest.raises(DirectoryError) as caught:
        load_directory(text)
    return caught.value.problems


async def load(data: Data, **options: Any) -> Any:
    return await import_directory(load_directory(dump_yaml(data)), **options)


def index(items: list[Data], code: str) -> int:
    return next(i for i, item in enumerate(items) if item["code"] == code)


def unit(data: Data, code: str) -> Data:
    return data["units"][index(data["units"], code)]


def leaf(data: Data, code: str) -> Data:
    for group in data["categories"]:
        for child in group["children"]:
            if child["code"] == code:
                return child
    raise KeyError(code)


def official(data: Data, code: str) -> Data:
    return data["officials"][index(data["officials"], code)]


async def row_counts() -> dict[str, int]:
    return {
        model.__name__: await model.all().count()
        for model in (Township, Village, Grid, Unit, Category, Official, Account)
    }


# --- the example ------------------------------------------------------------------------------


async def test_the_example_imports_as_written(database: str) -> None:
    data = example()
    report = await import_file(EXAMPLE)

    leaves = sum(len(group["children"]) for group in data["categories"])
    grids = sum(len(village["grids"]) for village in data["villages"])
    assert await row_counts() == {
        "Township": 1,
        "Village": len(data["villages"]),
        "Grid": grids,
        "Unit": len(data["units"]),
        "Category": len(data["categories"]) + leaves,
        "Official": len(data["officials"]),
        "Account": 0,
    }
    assert (report.villages.created, report.grids.created, report.units.created) == (
        4, grids, len(data["units"])
    )
    assert report.changed and not report.officials.updated
    assert str(report).startswith("directory BL: created townships 1, villages 4")

    township = await Township.get(code="BL")
    assert township.emergency_numbers == {"fire": "119", "ambulance": "120", "police": "110"}
    assert (township.days_off, township.working_days) == (["2026-10-08"], ["2026-09-27"])
    grid_unit = await Unit.get(code="zhengda-g1").prefetch_related(
        "supervisor__supervisor__supervisor", "village", "grid"
    )
    assert (grid_unit.village.name, grid_unit.grid.name) == ("正达村", "第一网格")
    chain = grid_unit.supervisor
    assert [chain.code, chain.supervisor.code, chain.supervisor.supervisor.code] == [
        "zhengda-committee", "zhengda-team", "dispatch"
    ]
    misconduct = await Category.get(code="misconduct").prefetch_related("unit", "parent")
    assert misconduct.confidential and misconduct.unit.code == "jiwei"
    assert misconduct.parent.code == "integrity"
    su = await Official.get(code="su-jinqiao").prefetch_related("units")
    assert sorted(u.code for u in su.units) == ["dispatch", "zhengda-team"]
    assert su.display_name("zh-hant") == "蘇進僑"

    # The export says what the file says.
    assert load_directory(dump_yaml(await export_directory("BL"))) == load_directory(EXAMPLE)


async def test_a_second_import_writes_nothing(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    await import_file(EXAMPLE)
    before = await export_directory("BL")
    counts = await row_counts()

    caplog.set_level(logging.DEBUG, logger="tortoise.db_client")
    report = await import_file(EXAMPLE)
    statements = [record.getMessage().lstrip().upper() for record in caplog.records]

    assert not report.changed
    assert str(report) == "directory BL: no changes"
    assert any(s.startswith("SELECT") for s in statements), "the capture sees the queries"
    assert [s for s in statements if s.startswith(("INSERT", "UPDATE", "DELETE"))] == []
    assert await export_directory("BL") == before
    assert await row_counts() == counts


async def test_export_then_import_changes_nothing(database: str) -> None:
    await import_file(EXAMPLE)
    exported = await export_directory("BL")
    text = dump_yaml(exported)
    assert "正达村" in text  # readable Chinese, not \u escapes
    assert list(exported) == ["township", "villages", "units", "categories", "officials", "faq"]

    report = await import_directory(load_directory(text))

    assert not report.changed
    assert await export_directory("BL") == exported


# --- changes ----------------------------------------------------------------------------------


async def test_changing_one_field_updates_exactly_that_row(database: str) -> None:
    data = example()
    await load(data)
    before = await export_directory("BL")
    leaf(data, "litter")["resolve_hours"] = 24

    report = await load(data)

    assert report.categories.updated == 1
    assert [name for name, counts in report.kinds().items() if counts.changed] == ["categories"]
    assert (await Category.get(code="litter")).resolve_hours == 24
    expected = copy.deepcopy(before)
    expected["categories"][0]["children"][0]["resolve_hours"] = 24
    assert await export_directory("BL") == expected


async def test_a_removed_official_is_deactivated_and_comes_back(database: str) -> None:
    data = example()
    await load(data)
    original = await export_directory("BL")
    kept = await Official.get(code="chen-jianping")

    without = copy.deepcopy(data)
    del without["officials"][index(data["officials"], "chen-jianping")]
    report = await load(without)

    assert report.officials.deactivated == 1
    assert [name for name, counts in report.kinds().items() if counts.changed] == ["officials"]
    row = await Official.get(code="chen-jianping").prefetch_related("units")
    assert (row.id, row.active) == (kept.id, False)
    assert sorted(u.code for u in row.units) == ["zhengda-g2", "zhengda-g3"]
    assert "chen-jianping" not in [o["code"] for o in (await export_directory("BL"))["officials"]]

    report = await load(data)

    assert (report.officials.updated, report.officials.created) == (1, 0)
    assert (await Official.get(code="chen-jianping")).active
    assert await export_directory("BL") == original


async def test_memberships_follow_the_file(database: str) -> None:
    data = example()
    await load(data)
    official(data, "wu-lijuan")["units"] = ["banli-g2", "banli-committee"]

    report = await load(data)

    assert report.officials.updated == 1
    wu = await Official.get(code="wu-lijuan").prefetch_related("units")
    assert sorted(u.code for u in wu.units) == ["banli-committee", "banli-g2"]


async def test_removed_units_and_categories_are_deactivated_not_deleted(database: str) -> None:
    data = example()
    await load(data)
    del data["units"][index(data["units"], "nongye")]
    del data["categories"][index(data["categories"], "farming")]

    report = await load(data)

    assert (report.units.deactivated, report.categories.deactivated) == (1, 2)
    assert not (await Unit.get(code="nongye")).active
    assert not (await Category.get(code="farm-help")).active
    assert (await Category.get(code="farm-help").prefetch_related("unit")).unit.code == "nongye"


# --- accounts ---------------------------------------------------------------------------------


async def test_a_telegram_id_binds_an_account(database: str) -> None:
    data = example()
    official(data, "su-jinqiao")["telegram_id"] = 777000
    await Account.create(id=888000, first_name="Lin", language="en")
    official(data, "admin")["telegram_id"] = 888000

    report = await load(data, default_language="zh-hant")

    assert report.accounts.created == 1
    account = await Account.get(id=777000)
    assert (account.first_name, account.language) == ("苏进侨", "zh-hant")
    assert (await Official.get(code="su-jinqiao")).account_id == 777000  # type: ignore[attr-defined]
    existing = await Account.get(id=888000)
    assert (existing.first_name, existing.language) == ("Lin", "en")
    assert (await Official.get(code="admin")).account_id == 888000  # type: ignore[attr-defined]
    assert not (await load(data)).changed


async def test_the_township_language_defaults_to_the_setting_and_is_exported(
    database: str,
) -> None:
    data = example()
    del data["township"]["language"]
    await load(data, default_language="en")
    assert (await Township.get(code="BL")).language == "en"
    assert (await export_directory("BL"))["township"]["language"] == "en"

    data["township"]["language"] = "zh-hant"
    await load(data, default_language="en")
    assert (await Township.get(code="BL")).language == "zh-hant"
    assert (await export_directory("BL"))["township"]["language"] == "zh-hant"


async def test_an_invited_official_stays_bound_after_reimport(database: str) -> None:
    await import_file(EXAMPLE)
    account = await Account.create(id=555000, first_name="苏", language="zh-hans")
    for code in ("su-jinqiao", "chen-xiaoqin"):  # one person in two posts
        link = await invite(await Official.get(code=code), ttl_days=7)
        await redeem(link.token, account)

    report = await import_file(EXAMPLE)

    assert not report.changed
    for code in ("su-jinqiao", "chen-xiaoqin"):
        assert (await Official.get(code=code)).account_id == 555000  # type: ignore[attr-defined]
    exported = await export_directory("BL")
    ids = {o["code"]: o.get("telegram_id") for o in exported["officials"]}
    assert (ids["su-jinqiao"], ids["chen-xiaoqin"]) == (555000, None)
    assert not (await import_directory(load_directory(dump_yaml(exported)))).changed
    assert (await Official.get(code="chen-xiaoqin")).account_id == 555000  # type: ignore[attr-defined]


# --- invalid files ----------------------------------------------------------------------------


def _set(path: Callable[[Data], Data], key: str, value: Any) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        path(data)[key] = value

    return change


def _delete(path: Callable[[Data], Data], key: str) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        del path(data)[key]

    return change


def _append_copy(section: str, position: int) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        data[section].append(copy.deepcopy(data[section][position]))

    return change


def _share_telegram_id(*positions: int) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        for position in positions:
            data["officials"][position]["telegram_id"] = 4242

    return change


DISPATCH = index(example()["units"], "dispatch")
BROKEN: list[tuple[str, Callable[[Data], None], str]] = [
    (
        "missing name",
        _delete(lambda d: d["villages"][2]["grids"][0], "name"),
        "villages[2].grids[0].name: missing",
    ),
    (
        "unknown field",
        _set(lambda d: d["villages"][0], "nmae", "正达"),
        "villages[0].nmae: unknown field",
    ),
    (
        "unknown top-level field",
        _set(lambda d: d, "vilages", []),
        "vilages: unknown field",
    ),
    (
        "duplicate unit code",
        _append_copy("units", 1),
        f"units[{len(example()['units'])}].code: 'zhengda-g2' also used by units[1]",
    ),
    (
        "category code used at both levels",
        _set(lambda d: d["categories"][1]["children"][0], "code", "environment"),
        "categories[1].children[0].code: 'environment' also used by categories[0]",
    ),
    (
        "duplicate grid code",
        _set(lambda d: d["villages"][1]["grids"][1], "code", "g1"),
        "villages[1].grids[1].code: 'g1' also used by villages[1].grids[0]",
    ),
    (
        "unknown supervisor",
        _set(lambda d: d["units"][3], "supervisor", "foo"),
        "units[3].supervisor: unknown unit 'foo'",
    ),
    (
        "supervisor cycle",
        _set(lambda d: unit(d, "dispatch"), "supervisor", "zigui"),
        f"units[{DISPATCH}].supervisor: supervision cycle dispatch -> zigui -> dispatch",
    ),
    (
        "self supervision",
        _set(lambda d: unit(d, "dispatch"), "supervisor", "dispatch"),
        f"units[{DISPATCH}].supervisor: a unit cannot supervise itself",
    ),
    (
        "grid unit without supervisor",
        _delete(lambda d: d["units"][0], "supervisor"),
        "units[0].supervisor: required for kind grid",
    ),
    (
        "grid unit supervised by another village",
        _set(lambda d: d["units"][0], "supervisor", "banli-committee"),
        "units[0].supervisor: must be the unit of kind village of 'zhengda'",
    ),
    (
        "department unit inside a village",
        _set(lambda d: unit(d, "zigui"), "village", "zhengda"),
        f"units[{DISPATCH + 4}].village: not allowed for kind department",
    ),
    (
        "department level without unit",
        _delete(lambda d: d["categories"][2]["children"][0], "unit"),
        "categories[2].children[0].unit: required for level department",
    ),
    (
        "department level with a township office",
        _set(lambda d: d["categories"][2]["children"][0], "unit", "dispatch"),
        "categories[2].children[0].unit: level department needs a unit of kind department,"
        " not township_office",
    ),
    (
        "grid level with a unit",
        _set(lambda d: d["categories"][0]["children"][0], "unit", "dispatch"),
        "categories[0].children[0].unit: not allowed for level grid",
    ),
    (
        "confidential category routed to a village unit",
        _set(lambda d: d["categories"][8]["children"][0], "unit", "zhengda-committee"),
        "categories[8].children[0].unit: a confidential category goes to a township_office"
        " or department unit, not village",
    ),
    (
        "confidential category without unit",
        _delete(lambda d: d["categories"][8]["children"][0], "unit"),
        "categories[8].children[0].unit: required for a confidential category",
    ),
    (
        "confidential category at grid level",
        _set(lambda d: d["categories"][8]["children"][0], "level", "grid"),
        "categories[8].children[0].level: a confidential category is handled at township or"
        " department level",
    ),
    (
        "resolve before accept",
        _set(lambda d: d["categories"][0]["children"][0], "resolve_hours", 2),
        "categories[0].children[0].resolve_hours: must be at least accept_hours (4)",
    ),
    (
        "zero hours",
        _set(lambda d: d["categories"][0]["children"][0], "accept_hours", 0),
        "categories[0].children[0].accept_hours: must be a positive whole number",
    ),
    (
        "first-level category without children",
        _set(lambda d: d["categories"][0], "children", []),
        "categories[0].children: needs at least one child",
    ),
    (
        "first-level category with handling rules",
        _set(lambda d: d["categories"][0], "level", "grid"),
        "categories[0].level: unknown field",
    ),
    (
        "unknown level",
        _set(lambda d: d["categories"][0]["children"][0], "level", "county"),
        "categories[0].children[0].level: must be one of 'grid', 'village', 'township'"
        " or 'department'",
    ),
    (
        "lower-case township code",
        _set(lambda d: d["township"], "code", "bl"),
        "township.code: must be 1-8 capital letters",
    ),
    (
        "long township code",
        _set(lambda d: d["township"], "code", "BANLITOWN"),
        "township.code: must be 1-8 capital letters",
    ),
    (
        "bad timezone",
        _set(lambda d: d["township"], "timezone", "Asia/Beijing"),
        "township.timezone: unknown time zone 'Asia/Beijing' (e.g. Asia/Shanghai)",
    ),
    (
        "unquoted emergency number",
        _set(lambda d: d["township"]["emergency_numbers"], "fire", 119),
        'township.emergency_numbers.fire: write it in quotes, e.g. "119"',
    ),
    (
        "positive group chat id",
        _set(lambda d: d["units"][3], "group_chat_id", 12345),
        "units[3].group_chat_id: must be a negative Telegram chat id (a group or channel)",
    ),
    (
        "unknown language",
        _set(lambda d: d["villages"][0], "names", {"fr": "Zhengda"}),
        "villages[0].names: unknown language 'fr' (use zh-hans, zh-hant, en)",
    ),
    (
        "official in an unknown unit",
        _set(lambda d: d["officials"][2], "units", ["dispatch", "nowhere"]),
        "officials[2].units[1]: unknown unit 'nowhere'",
    ),
    (
        "official without units",
        _set(lambda d: d["officials"][2], "units", []),
        "officials[2].units: needs at least one unit",
    ),
    (
        "shared telegram id",
        _share_telegram_id(1, 4),
        "officials[4].telegram_id: also used by officials[1]",
    ),
    (
        "township language",
        _set(lambda d: d["township"], "language", "fr"),
        "township.language: must be one of zh-hans, zh-hant, en",
    ),
    (
        "a day both off and working",
        _set(lambda d: d["township"]["calendar"], "working_days", ["2026-10-08"]),
        "township.calendar: 2026-10-08 is both a day off and a working day",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_a_broken_file_names_the_place(change: Callable[[Data], None], expected: str) -> None:
    data = example()
    change(data)
    assert expected in problems(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("township:\n\tcode: BL\n",
         "line 2: not valid YAML: found character '\\t' that cannot start any token"),
        ("township:\n  code: BL\n  code: BX\n", "line 3: duplicate key 'code'"),
        ("township: {code: BL, name: [坂里乡}\n",
         "line 1: not valid YAML: expected ',' or ']', but got '}'"),
        ("", "file: empty"),
        ("- township\n", "file: must be a mapping with township, villages, units, categories,"
         " officials"),
    ],
    ids=["tab", "duplicate key", "unclosed bracket", "empty", "a list"],
)
def test_a_file_that_is_not_yaml_names_the_line(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    data = example()
    del data["villages"][2]["grids"][0]["name"]
    data["units"][3]["supervisor"] = "foo"
    data["township"]["code"] = "bl"
    del data["categories"][2]["children"][0]["unit"]
    data["officials"][0]["rank"] = "chief"

    with pytest.raises(DirectoryError) as caught:
        load_directory(dump_yaml(data))

    assert sorted(caught.value.problems) == sorted([
        "township.code: must be 1-8 capital letters",
        "villages[2].grids[0].name: missing",
        "units[3].supervisor: unknown unit 'foo'",
        "categories[2].children[0].unit: required for level department",
        "officials[0].rank: unknown field",
    ])
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_a_broken_entry_hides_no_problem_and_invents_none() -> None:
    data = example()
    del unit(data, "dispatch")["name"]  # invalid, but its code is still known
    data["units"][0]["supervisor"] = "nowhere"

    found = problems(data)

    assert found == [
        f"units[{DISPATCH}].name: missing",
        "units[0].supervisor: unknown unit 'nowhere'",
    ]


def test_every_village_needs_its_village_unit() -> None:
    text = """
township: {code: XX, name: 测试乡}
villages: [{code: a, name: 甲村}, {code: b, name: 乙村}]
units:
  - {code: a-committee, name: 甲村两委, kind: village, village: a, supervisor: office}
  - {code: a-team, name: 甲村组团, kind: township_team, village: a, supervisor: office}
  - {code: office, name: 乡政府, kind: township_office}
categories:
  - code: group
    name: 分类
    children:
      - {code: small, name: 小事, level: village, accept_hours: 1, resolve_hours: 2}
      - {code: big, name: 大事, level: township, accept_hours: 1, resolve_hours: 2}
"""
    assert problems(text) == [
        "villages[1]: needs a unit of kind village"
        " (categories[0].children[0] is handled at grid or village level)",
        "villages[1]: needs a unit of kind township_team"
        " (categories[0].children[1] is handled at township level without a unit)",
    ]


async def test_a_directory_built_in_code_is_checked_too(database: str) -> None:
    data = example()
    data["units"][3]["supervisor"] = "foo"
    directory = DirectoryFile.model_validate(data)  # the fields are fine, the reference is not

    with pytest.raises(DirectoryError, match=r"units\[3\]\.supervisor: unknown unit 'foo'"):
        await import_directory(directory)
    assert await Township.all().count() == 0


async def test_an_invalid_file_changes_nothing(database: str, tmp_path: Path) -> None:
    await import_file(EXAMPLE)
    before, counts = await export_directory("BL"), await row_counts()
    data = example()
    data["villages"][0]["name"] = "改名村"
    data["officials"].append({"code": "new", "name": "新人", "role": "member", "units": ["x"]})
    broken = tmp_path / "broken.yaml"
    broken.write_text(dump_yaml(data), encoding="utf-8")

    with pytest.raises(DirectoryError) as caught:
        await import_file(broken)

    assert caught.value.problems == [f"officials[{len(data['officials']) - 1}].units[0]:"
                                     " unknown unit 'x'"]
    assert await export_directory("BL") == before
    assert await row_counts() == counts


async def test_a_missing_file_is_a_problem_not_a_crash(database: str, tmp_path: Path) -> None:
    with pytest.raises(DirectoryError) as caught:
        await import_file(tmp_path / "nowhere.yaml")
    assert caught.value.problems[0].startswith("file: cannot be read")


# --- all or nothing ---------------------------------------------------------------------------


async def _refuse_new_officials() -> Callable[[], Any]:
    """A database trigger that fails every INSERT into official; returns its remover.

    Both databases report it as a constraint violation, so tortoise raises IntegrityError.
    """
    connection = connections.get("default")
    if connection.capabilities.dialect == "sqlite":
        await connection.execute_script(
            "CREATE TRIGGER refuse_official BEFORE INSERT ON official "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END;"
        )
        return lambda: connection.execute_script("DROP TRIGGER refuse_official;")
    await connection.execute_script(
        "CREATE FUNCTION refuse_official() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'refused by test trigger' USING ERRCODE = 'check_violation'; "
        "END $$ LANGUAGE plpgsql; "
        "CREATE TRIGGER refuse_official BEFORE INSERT ON official "
        "FOR EACH ROW EXECUTE FUNCTION refuse_official();"
    )
    return lambda: connection.execute_script(
        "DROP TRIGGER refuse_official ON official; DROP FUNCTION refuse_official();"
    )


async def test_a_failure_midway_rolls_everything_back(database: str) -> None:
    data = example()
    await load(data)
    before, counts = await export_directory("BL"), await row_counts()
    data["township"]["name"] = "坂里镇"
    data["villages"][0]["name"] = "改名村"
    data["villages"][0]["grids"].append({"code": "g4", "name": "第四网格"})
    leaf(data, "litter")["resolve_hours"] = 24
    del data["units"][index(data["units"], "nongye")]
    del data["categories"][index(data["categories"], "farming")]
    official(data, "wu-lijuan")["units"] = ["banli-g1"]
    official(data, "su-jinqiao")["telegram_id"] = 777000
    data["officials"].append(
        {"code": "newcomer", "name": "新人", "role": "member", "units": ["banli-g2"]}
    )  # officials come last: everything above is written before this insert fails

    remove = await _refuse_new_officials()
    try:
        with pytest.raises(IntegrityError, match="refused by test trigger"):
            await load(data)
    finally:
        await remove()

    assert await export_directory("BL") == before
    assert await row_counts() == counts
    assert not await Account.exists(id=777000)
    assert (await load(data)).officials.created == 1  # the same file goes in once allowed
