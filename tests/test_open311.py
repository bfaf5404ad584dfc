"""The Open311 GeoReport v2 API: every endpoint in JSON and XML with the standard's fields, a
POST that becomes a case whose card reaches the unit's group through the emulator, the key
rules, the filters and their defaults, privacy, and an official's work showing in requests/{id}.
The real bot and back office on loopback (the `office` fixture), the real database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

import aiohttp
import backoffice
from conftest import make_villager
from test_cli import villagebot

from bot import apikeys, cases, open311
from bot.models import ApiKey, Case, CaseStatus, Category, Township, Unit, Village
from bot.sandbox import EXAMPLE_DIRECTORY, Sandbox

COMMITTEE_CHAT = -1001000000101  # 正达村两委: a grid-level case without a grid starts there
#: The standard's fields of a service request (GeoReport v2, GET requests).
REQUEST_FIELDS = {
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat", "long",
    "media_url",
}
SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords",
                  "group"}
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")  # Asia/Shanghai


async def _get(url: str, status: int = 200) -> tuple[str, str]:
    """The body and content type of a GET, with no cookie at all."""
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        body = await response.text()
        assert response.status == status, body
        return body, response.content_type


async def _json(url: str, status: int = 200) -> object:
    body, kind = await _get(url, status)
    assert kind == "application/json"
    return json.loads(body)


async def _xml(url: str, status: int = 200) -> ElementTree.Element:
    body, kind = await _get(url, status)
    assert kind == "text/xml" and body.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    return ElementTree.fromstring(body.encode())


async def _post(url: str, data: dict[str, str], status: int = 200) -> str:
    async with aiohttp.ClientSession() as client, client.post(url, data=data) as response:
        body = await response.text()
        assert response.status == status, body
        return body


def _fields(element: ElementTree.Element) -> dict[str, str | None]:
    return {child.tag: child.text for child in element}


def _error(body: object, code: int) -> str:
    assert isinstance(body, list) and len(body) == 1 and body[0]["code"] == code, body
    return str(body[0]["description"])


async def _key(name: str = "county", *, anonymous_text: bool = False) -> str:
    township = await Township.get(code="BL")
    return (await apikeys.create_key(township, name, anonymous_text=anonymous_text))[1]


def _api(office: Sandbox) -> str:
    return f"{office.web_url}/open311/v2"


# ---- services ---------------------------------------------------------------------------------


async def test_services_and_their_definition_in_json_and_xml(office: Sandbox) -> None:
    api = _api(office)
    listed = await _json(f"{api}/services.json")
    assert isinstance(listed, list)
    codes = [service["service_code"] for service in listed]
    leaves = await Category.filter(
        active=True, task=False, parent_id__isnull=False
    ).values_list("code", flat=True)
    assert sorted(codes) == sorted(leaves) and "litter" in codes
    assert "environment" not in codes, "headings are not services"
    litter = next(s for s in listed if s["service_code"] == "litter")
    assert set(litter) == SERVICE_FIELDS
    assert litter == {
        "service_code": "litter", "service_name": "卫生清理", "metadata": True,
        "type": "realtime", "keywords": "", "group": "环境卫生",
        "description": litter["description"],
    }
    assert "4" in litter["description"] and "48" in litter["description"]
    misconduct = next(s for s in listed if s["service_code"] == "misconduct")
    assert "不公开" in misconduct["description"]  # accepted, never published

    # A township task's category is no service, even once it exists.
    from bot import tasks

    await tasks.task_category(await Township.get(code="BL"))
    assert "~task" not in [s["service_code"] for s in await _json(f"{api}/services.json")]

    root = await _xml(f"{api}/services.xml")
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root.findall("service")] == codes
    assert _fields(root.findall("service")[codes.index("litter")]) == {
        **{k: str(v) if not isinstance(v, bool) else "true" for k, v in litter.items()},
        "keywords": None,
    }

    definition = await _json(f"{api}/services/litter.json")
    villages = [("zhengda", "正达村"), ("banli", "坂里村"), ("gaoceng", "高层村"),
                ("houfang", "后坊村")]
    assert definition == {
        "service_code": "litter",
        "attributes": [{
            "variable": True, "code": "village", "datatype": "singlevaluelist",
            "required": True, "order": 1,
            "datatype_description": definition["attributes"][0]["datatype_description"],
            "description": definition["attributes"][0]["description"],
            "values": [{"key": key, "name": name} for key, name in villages],
        }],
    }
    root = await _xml(f"{api}/services/litter.xml")
    assert root.tag == "service_definition" and root.findtext("service_code") == "litter"
    attribute = root.find("attributes/attribute")
    assert attribute is not None
    assert (attribute.findtext("variable"), attribute.findtext("code"),
            attribute.findtext("datatype"), attribute.findtext("required"),
            attribute.findtext("order")) == ("true", "village", "singlevaluelist", "true", "1")
    assert [(v.findtext("key"), v.findtext("name")) for v in attribute.findall("values/value")
            ] == villages

    assert "nope" in _error(await _json(f"{api}/services/nope.json", 404), 404)
    errors = await _xml(f"{api}/services/nope.xml", 404)
    assert errors.tag == "errors" and errors.findtext("error/code") == "404"
    assert "nope" in (errors.findtext("error/description") or "")


async def test_jurisdiction_id_is_the_township_code_and_needed_with_several(
    office: Sandbox,
) -> None:
    api = _api(office)
    assert await _json(f"{api}/services.json?jurisdiction_id=BL")
    _error(await _json(f"{api}/services.json?jurisdiction_id=XX", 404), 404)
    await Township.create(code="KD", name="魁多乡")
    _error(await _json(f"{api}/services.json", 400), 400)
    assert await _json(f"{api}/services.json?jurisdiction_id=KD") == []
    assert len(await _json(f"{api}/services.json?jurisdiction_id=BL")) > 10  # type: ignore[arg-type]
    errors = await _xml(f"{api}/requests.xml?jurisdiction_id=XX", 404)
    assert errors.tag == "errors" and errors.findtext("error/code") == "404"


# ---- a new request, and the case it becomes -----------------------------------------------------


async def test_a_post_becomes_a_case_at_the_unit_and_its_progress_shows_in_requests(
    office: Sandbox,
) -> None:
    group = office.emulator.group(COMMITTEE_CHAT, "正达村两委")
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # 正达村两委
    api, key = _api(office), await _key()
    answer = json.loads(await _post(f"{api}/requests.json", {
        "api_key": key, "jurisdiction_id": "BL", "service_code": "litter",
        "attribute[village]": "zhengda", "description": "村口垃圾桶满了，没人清理",
        "lat": "27.50123", "long": "118.90456", "address_string": "正达村村口",
        "media_url": "https://county.example.cn/media/1.jpg",
        "first_name": "王", "last_name": "小红", "phone": "13912345678",
        "email": "wang@example.cn",
    }))
    assert isinstance(answer, list) and len(answer) == 1
    assert set(answer[0]) == {"service_request_id", "token", "service_notice", "account_id"}
    number, token = answer[0]["service_request_id"], answer[0]["token"]
    assert re.fullmatch(r"BL-\d{4}-\d{6}", number) and answer[0]["account_id"] is None
    assert "受理" in answer[0]["service_notice"]

    case = await Case.get(number=number).prefetch_related("unit", "api_key", "village")
    assert case.reporter_id is None and case.grid_id is None  # type: ignore[attr-defined]
    assert case.unit.code == "zhengda-committee" and case.village.code == "zhengda"
    assert case.api_key.name == "county" and case.status == CaseStatus.NEW

    # The card reaches the responsible unit's group, as a villager's report's does; the
    # requester's name, phone and e-mail were not kept.
    card = await office.emulator.wait_for(group.chat_id, number)
    assert "村口垃圾桶满了" in card["text"] and "county" in card["text"]
    assert "https://county.example.cn/media/1.jpg" in card["text"]
    for personal in ("小红", "13912345678", "wang@example.cn"):
        assert personal not in card["text"]
        assert not await Case.filter(description__contains=personal).exists()

    assert await _json(f"{api}/tokens/{token}.json") == [
        {"service_request_id": number, "token": token}
    ]
    root = await _xml(f"{api}/tokens/{token}.xml")
    assert root.tag == "service_requests"
    assert _fields(root.find("request")) == {"service_request_id": number, "token": token}  # type: ignore[arg-type]
    _error(await _json(f"{api}/tokens/nothing.json", 404), 404)

    [row] = await _json(f"{api}/requests/{number}.json")  # type: ignore[misc]
    assert set(row) == REQUEST_FIELDS
    assert row["status"] == "open" and row["status_notes"] is None
    assert (row["service_code"], row["service_name"]) == ("litter", "卫生清理")
    assert row["agency_responsible"] == "正达村两委"
    assert row["description"] == "村口垃圾桶满了，没人清理"
    assert (row["lat"], row["long"], row["address"]) == (27.50123, 118.90456, "正达村村口")
    assert row["media_url"] == "https://county.example.cn/media/1.jpg"
    assert row["address_id"] is None and row["zipcode"] is None
    for moment in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert OFFSET.match(row[moment]), row[moment]
    assert case.resolve_by is not None
    assert datetime.fromisoformat(row["expected_datetime"]) == case.resolve_by.replace(
        microsecond=0
    )
    assert datetime.fromisoformat(row["requested_datetime"]) == case.created_at.replace(
        microsecond=0
    )
    root = await _xml(f"{api}/requests/{number}.xml")
    assert root.tag == "service_requests"
    xml_row = _fields(root.find("request"))  # type: ignore[arg-type]
    assert set(xml_row) == REQUEST_FIELDS
    assert {k: v for k, v in xml_row.items() if v is not None} == {
        k: str(v) for k, v in row.items() if v is not None
    }

    # Accepted in the group by an official: open, the deadline to resolve, a later update.
    await lin.user.tap(card, "✅ 受理", chat=group.chat_id)
    await lin.expect(number)
    [accepted] = await _json(f"{api}/requests/{number}.json")  # type: ignore[misc]
    assert accepted["status"] == "open" and "办理中" in accepted["service_notice"]
    assert datetime.fromisoformat(accepted["updated_datetime"]) == (
        await Case.get(id=case.id)
    ).updated_at.replace(microsecond=0)

    # A progress note is the status notes; an internal note is not.
    official = await _lin()
    await cases.add_note(case.id, official, "已联系保洁员，今天下午清理", public=True)
    await cases.add_note(case.id, official, "保洁员老张电话 13700000000", public=False)
    [noted] = await _json(f"{api}/requests/{number}.json")  # type: ignore[misc]
    assert noted["status_notes"] == "已联系保洁员，今天下午清理"

    # Resolved with evidence through the bot: closed, the resolution note the status notes.
    await lin.tap("✔️ 办结")
    await lin.expect("请至少发送一张处理后的现场照片")
    await lin.user.send_photo()
    await lin.expect("照片：1 张")
    await lin.send("垃圾已清运")
    for _ in range(100):
        if (await Case.get(id=case.id)).status == CaseStatus.RESOLVED:
            break
        await asyncio.sleep(0.05)
    [resolved] = await _json(f"{api}/requests/{number}.json")  # type: ignore[misc]
    assert (resolved["status"], resolved["status_notes"]) == ("closed", "垃圾已清运")
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
    assert resolved["service_notice"] == "已办结。"
    root = await _xml(f"{api}/requests/{number}.xml")
    assert root.findtext("request/status") == "closed"
    assert root.findtext("request/status_notes") == "垃圾已清运"

    # The back office shows where it came from, and the picture's address.
    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases/{number}")
        assert "经 Open311 接口由 county 转来" in page and "垃圾已清运" in page
        assert 'href="https://county.example.cn/media/1.jpg"' in page
    assert "经 Open311 接口由 county 转来" in (await office.emulator.wait_for(
        group.chat_id, lambda m: "自动结案" in m.get("text", "")
    ))["text"], "the group's card says it closes by itself"

    # No villager to confirm it: it closes by itself, as an unrated case does.
    await cases.close(case.id)
    [closed] = await _json(f"{api}/requests/{number}.json")  # type: ignore[misc]
    assert closed["status"] == "closed" and closed["service_notice"] == "已结案。"


async def _lin():  # type: ignore[no-untyped-def]
    from bot.models import Official

    return await Official.get(code="lin-xiuying")


async def test_the_key_rules_and_every_refusal_in_the_standards_list(office: Sandbox) -> None:
    api, key = _api(office), await _key()
    good = {"api_key": key, "service_code": "litter", "attribute[village]": "zhengda",
            "description": "路灯不亮"}
    url = f"{api}/requests.json"

    async def refused(data: dict[str, str], status: int, *, xml: bool = False) -> str:
        target = f"{api}/requests.xml" if xml else url
        body = await _post(target, data, status)
        if xml:
            root = ElementTree.fromstring(body.encode())
            assert root.tag == "errors" and root.findtext("error/code") == str(status)
            return root.findtext("error/description") or ""
        return _error(json.loads(body), status)

    assert "api_key" in await refused({**good, "api_key": ""}, 403)
    assert "api_key" in await refused({k: v for k, v in good.items() if k != "api_key"}, 403)
    await refused({**good, "api_key": key + "x"}, 403)
    await refused({**good, "api_key": key + "x"}, 403, xml=True)
    # Another township's key is no key here.
    other = await Township.create(code="KD", name="魁多乡")
    _, kd_key = await apikeys.create_key(other, "county")
    await refused({**good, "api_key": kd_key, "jurisdiction_id": "BL"}, 403)
    # A revoked key stops at once.
    spare = await _key("spare")
    await apikeys.revoke_key(await Township.get(code="BL"), "spare")
    await refused({**good, "api_key": spare, "jurisdiction_id": "BL"}, 403)
    good["jurisdiction_id"] = "BL"

    assert "nope" in await refused({**good, "service_code": "nope"}, 404)
    await refused({**good, "service_code": "environment"}, 404)  # a heading
    await refused({**good, "service_code": ""}, 400)
    assert "village" in await refused({**good, "attribute[village]": ""}, 400)
    assert "village" in await refused({**good, "attribute[village]": "kuiduo"}, 400)
    await refused({**good, "description": "   "}, 400)
    await refused({**good, "description": "长" * (cases.DESCRIPTION_MAX + 1)}, 400)
    await refused({**good, "lat": "27.5"}, 400)
    await refused({**good, "lat": "north", "long": "118.9"}, 400)
    await refused({**good, "lat": "95", "long": "118.9"}, 400)
    await refused({**good, "media_url": "javascript:alert(1)"}, 400, xml=True)
    assert await Case.all().count() == 0, "no refused request made a case"

    # The same request, with a key of the township: made once per POST.
    assert json.loads(await _post(url, good))[0]["service_request_id"]
    assert await Case.filter(api_key__name="county").count() == 1

    # GET needs no key; one given must be valid.
    assert len(await _json(f"{api}/requests.json?jurisdiction_id=BL")) == 1  # type: ignore[arg-type]
    _error(await _json(f"{api}/requests.json?jurisdiction_id=BL&api_key=wrong", 403), 403)


# ---- filters and defaults ---------------------------------------------------------------------


async def test_filters_and_the_90_days_and_1000_requests_defaults(office: Sandbox) -> None:
    api = _api(office)
    villager = await make_villager(1001)
    now = datetime.now(UTC)
    litter, roads = await Category.get(code="litter"), await Category.get(code="roads")

    async def made(category: Category, days_ago: float) -> Case:
        change = await cases.report(villager, category, description=f"{category.code} {days_ago}",
                                    at=now - timedelta(days=days_ago))
        return change.case

    old = await made(litter, 120)
    month = await made(roads, 30)
    week = await made(litter, 7)
    today = await made(roads, 0.01)
    await cases.accept(today.id, await _zheng())

    def numbers(rows: object) -> list[str]:
        assert isinstance(rows, list)
        return [row["service_request_id"] for row in rows]

    # The last 90 days by default, newest first.
    assert numbers(await _json(f"{api}/requests.json")) == [
        today.number, week.number, month.number
    ]
    root = await _xml(f"{api}/requests.xml")
    assert [r.findtext("service_request_id") for r in root.findall("request")] == [
        today.number, week.number, month.number
    ]
    assert numbers(await _json(f"{api}/requests.json?service_code=litter")) == [week.number]
    assert numbers(await _json(f"{api}/requests.json?service_code=litter,roads")) == [
        today.number, week.number, month.number
    ]
    assert numbers(await _json(f"{api}/requests.json?status=open")) == [
        today.number, week.number, month.number
    ]
    await cases.resolve(today.id, await _zheng(), "修好了", ["photo-1"])
    assert numbers(await _json(f"{api}/requests.json?status=closed")) == [today.number]
    assert numbers(await _json(f"{api}/requests.json?status=open,closed")) == [
        today.number, week.number, month.number
    ]
    _error(await _json(f"{api}/requests.json?status=pending", 400), 400)

    # A window of one's own, with the township's offset or UTC; at most 90 days.
    start = (now - timedelta(days=150)).astimezone().isoformat(timespec="seconds")
    end = (now - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = f"start_date={quote(start, safe='')}&end_date={end}"
    assert numbers(await _json(f"{api}/requests.json?{window}")) == [old.number]
    only_start = (now - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    # An unescaped "+" arrives as a space, and is read as the offset it was; the window is
    # then the 90 days from the start.
    assert numbers(await _json(f"{api}/requests.json?start_date={only_start}")) == [
        month.number
    ]
    too_long = (now - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "90 days" in _error(await _json(
        f"{api}/requests.json?start_date={too_long}&end_date={now:%Y-%m-%dT%H:%M:%SZ}", 400
    ), 400)
    _error(await _json(f"{api}/requests.json?start_date=yesterday", 400), 400)
    _error(await _json(f"{api}/requests.json?start_date=2026-01-01T00:00:00", 400), 400)

    # Ids override every other filter, the 90 days too.
    assert numbers(await _json(
        f"{api}/requests.json?service_request_id={old.number},{week.number}&status=closed"
    )) == [week.number, old.number]
    _error(await _json(f"{api}/requests/BL-1999-000001.json", 404), 404)

    # At most 1,000 requests, the newest.
    township, unit = await Township.get(code="BL"), await Unit.get(code="zhengda-committee")
    village = await Village.get(code="zhengda")
    moment = now - timedelta(days=1)
    await Case.bulk_create([
        Case(number=f"BL-2000-{n:06d}", township=township, category=litter, village=village,
             unit=unit, description="批量", created_at=moment + timedelta(seconds=n),
             updated_at=moment)
        for n in range(1, 1002)
    ])
    rows = await _json(f"{api}/requests.json")
    assert isinstance(rows, list) and len(rows) == open311.MOST == 1000
    assert numbers(rows)[:2] == [today.number, "BL-2000-001001"]
    assert "BL-2000-000001" not in numbers(rows)


async def _zheng():  # type: ignore[no-untyped-def]
    """Roads are village-level: 正达村两委's leader may accept and resolve them."""
    from bot.models import Official

    return await Official.get(code="zheng-guohua")


# ---- privacy ---------------------------------------------------------------------------------


async def test_no_confidential_case_no_name_no_phone_and_anonymous_text_only_with_the_right(
    office: Sandbox,
) -> None:
    api = _api(office)
    villager = await make_villager(1001, phone="+8613800000001")
    plain = (await cases.report(villager, await Category.get(code="litter"),
                                description="村口垃圾桶满了")).case
    hidden = (await cases.report(villager, await Category.get(code="roads"),
                                 description="村道塌了一块", anonymous=True)).case
    secret = (await cases.report(villager, await Category.get(code="misconduct"),
                                 description="村干部吃拿卡要")).case
    reader, right = await _key("reader"), await _key("auditor", anonymous_text=True)

    listed = await _json(f"{api}/requests.json")
    assert isinstance(listed, list)
    assert [row["service_request_id"] for row in listed] == [hidden.number, plain.number]
    assert {row["service_request_id"]: row["description"] for row in listed} == {
        plain.number: "村口垃圾桶满了", hidden.number: None,
    }
    _error(await _json(f"{api}/requests/{secret.number}.json", 404), 404)
    await _xml(f"{api}/requests/{secret.number}.xml", 404)
    ids = f"service_request_id={secret.number},{plain.number}"
    assert [r["service_request_id"] for r in await _json(f"{api}/requests.json?{ids}")  # type: ignore[union-attr]
            ] == [plain.number]
    assert await _json(f"{api}/requests.json?service_code=misconduct") == []

    assert (await _json(f"{api}/requests/{hidden.number}.json?api_key={reader}")  # type: ignore[index]
            )[0]["description"] is None
    assert (await _json(f"{api}/requests/{hidden.number}.json?api_key={right}")  # type: ignore[index]
            )[0]["description"] == "村道塌了一块"
    root = await _xml(f"{api}/requests.xml?api_key={reader}")
    assert [_fields(r)["description"] for r in root.findall("request")] == [
        None, "村口垃圾桶满了"
    ]
    root = await _xml(f"{api}/requests.xml?api_key={right}")
    assert [_fields(r)["description"] for r in root.findall("request")] == [
        "村道塌了一块", "村口垃圾桶满了"
    ]

    # A confidential service still takes a request; it is never published, token or id.
    key = await _key("county")
    answer = json.loads(await _post(f"{api}/requests.json", {
        "api_key": key, "service_code": "misconduct", "attribute[village]": "banli",
        "description": "有人收红包",
    }))
    made = await Case.get(number=answer[0]["service_request_id"]).prefetch_related("unit")
    assert made.unit.code == "jiwei"
    _error(await _json(f"{api}/requests/{made.number}.json", 404), 404)
    _error(await _json(f"{api}/tokens/{answer[0]['token']}.json", 404), 404)

    # Nowhere a name or a phone, nor a confidential description, in any answer.
    for path in ("requests.json", "requests.xml", f"requests/{plain.number}.json",
                 f"requests/{plain.number}.xml", f"requests.json?api_key={right}",
                 f"requests.xml?api_key={right}", "services.json", "services/litter.xml"):
        body, _ = await _get(f"{api}/{path}")
        for personal in ("李明", "13800000001", "吃拿卡要", "收红包", secret.number):
            assert personal not in body, (path, personal)


# ---- the keys' command ---------------------------------------------------------------------------


def test_apikey_create_list_revoke_as_an_operator_runs_them(
    database_url: str, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return villagebot(*args, database_url=database_url, cwd=tmp_path)

    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    made = run("apikey", "create", "--township", "BL", "--name", "county", "--anonymous-text")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert len(key) >= 40 and "shown only now" in made.stderr and "anonymous" in made.stderr
    # Only the key's SHA-256 is kept.
    assert asyncio.run(_stored(database_url)) == [
        ("county", hashlib.sha256(key.encode()).hexdigest(), True, False)
    ]

    again = run("apikey", "create", "--name", "county")
    assert again.returncode == 2 and "already" in again.stderr
    other = run("apikey", "create", "--name", "city")
    assert other.returncode == 0 and other.stdout.strip() != key
    listed = run("apikey", "list").stdout.splitlines()
    assert [line.split("\t")[1:3] for line in listed] == [["county", "active"], ["city", "active"]]
    assert key not in "\n".join(listed)

    assert run("apikey", "revoke", "county").returncode == 0
    assert run("apikey", "revoke", "county").returncode == 2, "revoked already"
    assert run("apikey", "revoke", listed[1].split("\t")[0]).returncode == 0  # by its id
    states = [line.split("\t")[2] for line in run("apikey", "list").stdout.splitlines()]
    assert len(states) == 2 and all(state.startswith("revoked ") for state in states)
    # Once revoked, its name may go to a new key.
    assert run("apikey", "create", "--name", "county").returncode == 0
    assert [row[3] for row in asyncio.run(_stored(database_url))] == [True, True, False]


async def _stored(database_url: str) -> list[tuple[str, str, bool, bool]]:
    from bot import db

    await db.start(database_url)
    try:
        return [(k.name, k.key_hash, k.anonymous_text, k.revoked_at is not None)
                for k in await ApiKey.all().order_by("id")]
    finally:
        await db.stop()
