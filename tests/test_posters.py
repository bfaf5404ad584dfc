"""Village posters and invitation sheets: the QR codes read back from the pictures, opened
through the emulator; the CLI, the chat's /invite for everyone and the back office's buttons."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from pathlib import Path

import backoffice
import pypdf
import pytest
import zxingcpp
from conftest import make_villager
from PIL import Image

from bot.invitations import invite
from bot.models import Account, Official, Village, Villager
from bot.posters import village_poster
from bot.sandbox import Sandbox

#: A4 in PDF points (210 × 297 mm), to a hundredth.
A4_POINTS = (595.28, 841.89)
SETTINGS = ("BOT_TOKEN", "TELEGRAM_API_URL", "DATABASE_URL", "REDIS_URL", "DIRECTORY_FILE",
            "WEB_LISTEN")


def decoded(png: bytes) -> list[str]:
    """The texts of the QR codes in a picture, read as a phone's scanner reads them."""
    image = Image.open(io.BytesIO(png))
    assert image.size == (1240, 1753), "A4 at 150 dpi"
    qr = zxingcpp.BarcodeFormat.QRCode
    return [r.text for r in zxingcpp.read_barcodes(image) if r.format == qr]


def a4_pages(pdf: bytes) -> list[pypdf.PageObject]:
    """The pages of a PDF that a PDF reader opens, each checked to be A4, portrait."""
    assert pdf.startswith(b"%PDF-")
    pages = list(pypdf.PdfReader(io.BytesIO(pdf), strict=True).pages)
    for page in pages:
        box = page.mediabox
        assert (round(float(box.width), 2), round(float(box.height), 2)) == A4_POINTS
    return pages


async def username(sandbox: Sandbox) -> str:
    assert sandbox.app is not None
    return (await sandbox.app.bot.me()).username or ""


async def villagebot(sandbox: Sandbox, database_url: str, *args: str) -> tuple[int, str, str]:
    """The command in a process of its own, asking the emulator for the bot's username as it
    would ask Telegram."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS}
    env.update(DATABASE_URL=database_url, BOT_TOKEN=sandbox.emulator.token,
               TELEGRAM_API_URL=sandbox.emulator.base_url, WEB_LISTEN="")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


# ---- posters --------------------------------------------------------------------------------


async def test_a_posters_code_opens_registration_in_its_village(sandbox: Sandbox) -> None:
    zhengda = await Village.get(code="zhengda")
    printed = await village_poster(zhengda, await username(sandbox))
    [page] = a4_pages(printed.pdf)
    words = page.extract_text()
    assert "正达村" in words and "坂里乡" in words and "村里有事，用手机反映。" in words
    [link] = decoded(printed.pngs[0])
    assert link == f"https://t.me/villagebot?start=v-{zhengda.id}"

    newcomer = sandbox.phone(1201, "王芳")
    await newcomer.send("/start " + link.partition("?start=")[2])
    await newcomer.expect("欢迎！您正在登记为正达村村民，只需三步。")
    await newcomer.expect("您家属于哪个网格？")  # the village question is skipped
    assert not [m for m in sandbox.emulator.bot_messages(1201) if "您住在哪个村" in
                (m.get("text") or "")]
    await newcomer.tap("第二网格")
    await newcomer.expect("请告诉我您的姓名")
    await newcomer.send("王芳")
    await newcomer.press("跳过")
    await newcomer.expect("谢谢您，王芳！您已登记为正达村村民。")
    villager = await Villager.get(account_id=1201).prefetch_related("village", "grid")
    assert (villager.village.code, villager.grid.code, villager.name) == ("zhengda", "g2", "王芳")


async def test_a_poster_of_another_village_registers_there(sandbox: Sandbox) -> None:
    banli = await Village.get(code="banli")
    [link] = decoded((await village_poster(banli, await username(sandbox))).pngs[0])
    english = sandbox.phone(1202, "Anna", language="en")
    await english.send("/start " + link.partition("?start=")[2])
    await english.expect("You are registering in")
    await english.tap("I don't know")
    await english.send("Anna")
    await english.press("Skip")
    await english.expect("You are registered in")
    villager = await Villager.get(account_id=1202)
    assert (villager.village_id, villager.grid_id) == (banli.id, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload", ["v-999999", "gone"])
async def test_an_unknown_or_inactive_village_asks_as_usual(
    sandbox: Sandbox, payload: str
) -> None:
    houfang = await Village.get(code="houfang")
    if payload == "gone":  # a village the directory dropped since the poster was printed
        houfang.active = False
        await houfang.save()
        payload = f"v-{houfang.id}"
    li = sandbox.phone(1203, "李明")
    await li.send(f"/start {payload}")
    await li.expect("您打开的链接里的村不在名单上，请点您住的村。")
    question = await li.expect("您住在哪个村？")
    assert ("后坊村" in str(question.get("reply_markup"))) == houfang.active
    await li.tap("正达村")
    await li.expect("您家属于哪个网格？")


async def test_someone_registered_who_scans_a_poster_is_welcomed_back(sandbox: Sandbox) -> None:
    await make_villager(1204)  # 李明 of 正达村
    li = sandbox.phone(1204, "李明")
    banli = await Village.get(code="banli")
    await li.send(f"/start v-{banli.id}")
    await li.expect("欢迎回来，李明！")
    villager = await Villager.get(account_id=1204).prefetch_related("village")
    assert villager.village.code == "zhengda", "a poster does not move anyone"
    # A draft waiting is kept, as with a plain /start.
    await li.send("/report")
    await li.expect("请点一个类别")
    await li.send(f"/start v-{banli.id}")
    await li.expect("您有一条还没提交的反映。要继续填写，还是重新开始？")
    # An official is welcomed back too, not registered as a villager.
    su = await Official.get(code="su-jinqiao")
    su.account = await Account.create(id=1205, first_name="苏进侨", language="zh-hans")
    await su.save()
    official = sandbox.phone(1205, "苏进侨")
    await official.send(f"/start v-{banli.id}")
    await official.expect("欢迎回来，苏进侨。")
    assert not await Villager.exists(account_id=1205)


async def test_the_poster_command_writes_pdf_and_png(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    code, stdout, stderr = await villagebot(
        sandbox, database_url, "poster", "--village", "zhengda", "--out", str(tmp_path / "p")
    )
    assert code == 0, stderr
    pdf, png = (Path(line) for line in stdout.split())
    assert (pdf.name, png.name) == ("poster-BL-zhengda.pdf", "poster-BL-zhengda.png")
    assert len(a4_pages(pdf.read_bytes())) == 1
    zhengda = await Village.get(code="zhengda")
    assert decoded(png.read_bytes()) == [f"https://t.me/villagebot?start=v-{zhengda.id}"]
    code, stdout, _ = await villagebot(sandbox, database_url, "poster", "--all", "--out",
                                       str(tmp_path / "all"))
    assert code == 0 and len(stdout.split()) == 2 * await Village.filter(active=True).count()
    code, _, stderr = await villagebot(sandbox, database_url, "poster", "--village", "nowhere")
    assert code == 2
    assert stderr.strip() == "villagebot: township BL has no active village with the code nowhere"


# ---- invitations for everyone ---------------------------------------------------------------


def _rows(table: bytes) -> list[list[str]]:
    assert table.startswith("\ufeff".encode()), "a byte-order mark, for spreadsheets"
    header, *rows = csv.reader(io.StringIO(table.decode("utf-8-sig")))
    assert header == ["代码", "姓名", "单位", "邀请链接", "有效期至"]
    return rows


async def _every_link_binds_its_official(
    sandbox: Sandbox, rows: list[list[str]], first_id: int
) -> None:
    for number, (code, name, *_) in enumerate(rows):
        token = rows[number][3].partition("?start=")[2]
        phone = sandbox.phone(first_id + number, name)
        await phone.send(f"/start {token}")
        await phone.expect(f"欢迎您，{name}！您的 Telegram 账号已绑定")
        official = await Official.get(code=code)
        assert official.account_id == first_id + number  # type: ignore[attr-defined]


async def test_invite_all_writes_a_table_and_a_sheet_whose_links_bind_each_official(
    sandbox: Sandbox, database_url: str, tmp_path: Path
) -> None:
    joined = await Official.get(code="admin")
    joined.account = await Account.create(id=1300, first_name="林建华", language="zh-hans")
    await joined.save()
    waiting = set(await Official.filter(active=True, account_id__isnull=True)
                  .values_list("code", flat=True))
    assert len(waiting) == 15

    code, stdout, stderr = await villagebot(
        sandbox, database_url, "invite", "--all", "--out", str(tmp_path)
    )
    assert code == 0, stderr
    assert "15 officials of BL; each link single use; expires" in stderr
    files = [Path(line) for line in stdout.split()]
    assert [f.suffix for f in files] == [".csv", ".pdf", ".png", ".png"]
    rows = _rows(files[0].read_bytes())
    assert {row[0] for row in rows} == waiting, "one row per official not joined, no one else"
    assert len({row[3] for row in rows}) == 15
    su = next(row for row in rows if row[0] == "su-jinqiao")
    assert su[1:3] == ["苏进侨", "正达村组团联村、坂里乡调度中心"]
    assert su[4].endswith("Asia/Shanghai")
    assert all(row[3].startswith("https://t.me/villagebot?start=inv-") for row in rows)
    assert len(a4_pages(files[1].read_bytes())) == 2  # 12 a page
    on_sheet = decoded(files[2].read_bytes()) + decoded(files[3].read_bytes())
    assert sorted(on_sheet) == sorted(row[3] for row in rows)

    await _every_link_binds_its_official(sandbox, rows, 1301)
    assert not await Official.filter(active=True, account_id__isnull=True).exists()
    assert (await Official.get(code="admin")).account_id == 1300  # type: ignore[attr-defined]
    code, stdout, stderr = await villagebot(sandbox, database_url, "invite", "--all")
    assert (code, stdout) == (0, "") and "every active official has joined already" in stderr


async def test_invite_takes_a_code_or_all(sandbox: Sandbox, database_url: str) -> None:
    code, stdout, _ = await villagebot(sandbox, database_url, "invite", "su-jinqiao")
    assert code == 0 and stdout.startswith("https://t.me/villagebot?start=inv-")
    code, _, stderr = await villagebot(sandbox, database_url, "invite", "su-jinqiao", "--all")
    assert code == 2 and "give an official's code, or --all" in stderr


async def _document(sandbox: Sandbox, chat_id: int, suffix: str) -> bytes:
    message = await sandbox.emulator.wait_for(
        chat_id, lambda m: m.get("document", {}).get("file_name", "").endswith(suffix)
    )
    assert sandbox.app is not None
    downloaded = await sandbox.app.bot.download(message["document"]["file_id"])
    assert downloaded is not None
    return downloaded.read()


async def test_an_administrator_invites_everyone_from_the_chat(sandbox: Sandbox) -> None:
    made = await invite(await Official.get(code="admin"), ttl_days=7)
    admin = sandbox.phone(1400, "林建华")
    await admin.send(f"/start {made.token}")
    await admin.expect("欢迎您，林建华！")
    await admin.send("/invite")
    await admin.expect("要邀请哪位工作人员？")
    await admin.tap("🖨 全部，打印成一张表")
    # The sheet is drawn first (a PDF of every invitation): seconds on a busy machine.
    await admin.expect("给 15 位尚未加入的工作人员的邀请。", timeout=30)
    rows = _rows(await _document(sandbox, 1400, ".csv"))
    assert len(rows) == 15 and "admin" not in {row[0] for row in rows}
    assert len(a4_pages(await _document(sandbox, 1400, ".pdf"))) == 2
    first = decoded(await _document(sandbox, 1400, "-1.png"))
    second = decoded(await _document(sandbox, 1400, "-2.png"))
    assert (len(first), len(second)) == (12, 3)
    assert sorted(first + second) == sorted(row[3] for row in rows)
    await _every_link_binds_its_official(sandbox, rows, 1401)


async def test_only_an_administrator_may_invite_everyone(sandbox: Sandbox) -> None:
    made = await invite(await Official.get(code="su-jinqiao"), ttl_days=7)
    su = sandbox.phone(1500, "苏进侨")
    await su.send(f"/start {made.token}")
    welcome = await su.expect("欢迎您，苏进侨！")
    query = await su.user.tap_data(welcome, "i2:1")
    answer = await sandbox.emulator.wait_answer(query)
    assert answer["show_alert"] and answer["text"] == "这个按钮已失效。"
    await asyncio.sleep(0.3)
    assert not [m for m in sandbox.emulator.bot_messages(1500) if "document" in m]
    assert await Official.filter(account_id__isnull=True).count() == 15


# ---- the back office ------------------------------------------------------------------------


async def test_the_back_office_gives_posters_to_those_who_may_print_them(
    office: Sandbox,
) -> None:
    zhengda, banli = await Village.get(code="zhengda"), await Village.get(code="banli")
    admin = await backoffice.signed_in(await backoffice.official(office, "admin", 1600))
    grid = await backoffice.signed_in(await backoffice.official(office, "lin-xiuying", 1601))
    department = await backoffice.signed_in(await backoffice.official(office, "cai-lihua", 1602))
    try:
        directory = await backoffice.page(admin, f"{office.web_url}/directory")
        assert f'href="/posters/{zhengda.id}.pdf"' in directory
        listing = await backoffice.page(admin, f"{office.web_url}/posters")
        assert all(f"/posters/{v.id}.png" in listing for v in await Village.all())
        pdf, headers = await backoffice.download(
            admin, f"{office.web_url}/posters/{zhengda.id}.pdf"
        )
        assert headers["Content-Type"] == "application/pdf"
        assert 'filename="poster-BL-zhengda.pdf"' in headers["Content-Disposition"]
        assert "正达村" in a4_pages(pdf)[0].extract_text()

        # A grid worker of Zhengda prints Zhengda's poster, and no other village's.
        listing = await backoffice.page(grid, f"{office.web_url}/posters")
        assert 'href="/posters"' in listing
        assert f"/posters/{zhengda.id}.png" in listing and f"/posters/{banli.id}" not in listing
        png, headers = await backoffice.download(grid, f"{office.web_url}/posters/{zhengda.id}.png")
        assert headers["Content-Type"] == "image/png"
        assert decoded(png) == [f"https://t.me/villagebot?start=v-{zhengda.id}"]
        await backoffice.download(grid, f"{office.web_url}/posters/{banli.id}.pdf", 404)
        await backoffice.page(grid, f"{office.web_url}/directory", 404)

        # A department's official has no village: no link, no poster.
        cases = await backoffice.page(department, f"{office.web_url}/cases")
        assert 'href="/posters"' not in cases
        await backoffice.download(department, f"{office.web_url}/posters/{zhengda.id}.pdf", 404)
        # Signed out: asked to sign in, nothing drawn.
        async with backoffice.browser() as stranger:
            await backoffice.download(stranger, f"{office.web_url}/posters/{zhengda.id}.png", 401)
    finally:
        for session in (admin, grid, department):
            await session.close()
