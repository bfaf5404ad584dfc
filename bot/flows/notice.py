"""Public notices in the chat: an official posts one (`/notice`), villagers read them (`/notices`).

Posting is a conversation kept in the FSM data (`notice`): kind, title, text, photos and one
document, audience (the township, chosen villages, or one grid), then a preview with how many
villagers it reaches and Confirm/Cancel. Only roles the directory allows (`notice_roles`) may
start it; `bot.public_notices` holds the rules and queues the broadcast.
"""

from __future__ import annotations

from typing import Any

from aiogram import F
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InputMediaPhoto, Message

from bot import keyboards, public_notices
from bot.callbacks import NoticeStep, OpenNotice, WithdrawNotice
from bot.filters import Pressed
from bot.i18n import N_, _
from bot.models import Audience, Grid, Notice, NoticeKind, Village
from bot.people import Person
from bot.routers import Routes

routes = Routes("notice", private_only=True)

KINDS: tuple[NoticeKind, ...] = tuple(NoticeKind)


class Posting(StatesGroup):
    kind = State()
    title = State()
    body = State()
    attachments = State()
    audience = State()
    preview = State()


async def _draft(state: FSMContext) -> dict[str, Any]:
    return dict((await state.get_data()).get("notice") or {})


async def _save(state: FSMContext, draft: dict[str, Any]) -> None:
    await state.update_data(notice=draft)


def _step(action: str, value: int = 0) -> NoticeStep:
    return NoticeStep(action=action, value=value)


async def _stale(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer active."), show_alert=True)


@routes.message(Command("notice"))
async def begin(message: Message, state: FSMContext, person: Person) -> None:
    official = await public_notices.poster_of(person)
    if official is None:
        await message.answer(_("Your role may not post public notices."))
        return
    await state.clear()
    await state.set_state(Posting.kind)
    await _save(state, {"township_id": official.township_id})  # type: ignore[attr-defined]
    await message.answer(
        _("New public notice. What kind is it?"),
        reply_markup=keyboards.inline(
            [
                keyboards.button(_(public_notices.KIND_LABELS[kind]), _step("kind", index))
                for index, kind in enumerate(KINDS)
            ],
            2,
        ),
    )


@routes.callback_query(Posting.kind, NoticeStep.filter(F.action == "kind"))
async def kind_chosen(query: CallbackQuery, callback_data: NoticeStep, state: FSMContext) -> None:
    if callback_data.value >= len(KINDS) or not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    draft = await _draft(state)
    draft["kind"] = KINDS[callback_data.value].value
    await _save(state, draft)
    await state.set_state(Posting.title)
    await query.message.answer(
        _("Send the title (at most {count} characters).").format(count=public_notices.TITLE_MAX)
    )


async def _written(message: Message, limit: int, empty: str, too_long: str) -> str | None:
    """The text sent, or None when it is empty or longer than `limit` (and the poster is told
    which, to send it again)."""
    text = public_notices.clean(message.text)
    if not text:
        await message.answer(_(empty))
        return None
    if len(text) > limit:
        await message.answer(_(too_long).format(count=limit))
        return None
    return text


@routes.message(Posting.title, F.text, ~F.text.startswith("/"))
async def title_written(message: Message, state: FSMContext) -> None:
    title = await _written(
        message, public_notices.TITLE_MAX, N_("The title cannot be empty."),
        N_("The title is too long: at most {count} characters."),
    )
    if title is None:
        return
    draft = await _draft(state)
    draft["title"] = title
    await _save(state, draft)
    await state.set_state(Posting.body)
    await message.answer(
        _("Send the text of the notice (at most {count} characters).").format(
            count=public_notices.BODY_MAX
        )
    )


@routes.message(Posting.body, F.text, ~F.text.startswith("/"))
async def body_written(message: Message, state: FSMContext) -> None:
    body = await _written(
        message, public_notices.BODY_MAX, N_("The text cannot be empty."),
        N_("The text is too long: at most {count} characters."),
    )
    if body is None:
        return
    draft = await _draft(state)
    draft["body"] = body
    await _save(state, draft)
    await state.set_state(Posting.attachments)
    await message.answer(
        _("Send photos and one document (a PDF of the accounts, say) if the notice has any, "
          "then tap Done."),
        reply_markup=keyboards.inline([keyboards.button(_("✅ Done"), _step("done"))]),
    )


@routes.message(StateFilter(Posting.title, Posting.body), ~F.text.startswith("/"))
async def expected_text(message: Message) -> None:
    await message.answer(_("Please send it as text."))


@routes.message(Posting.attachments, F.photo)
async def photo_added(message: Message, state: FSMContext) -> None:
    draft = await _draft(state)
    photos = list(draft.get("photos") or [])
    if len(photos) >= public_notices.PHOTOS_MAX:
        await message.answer(
            _("At most {count} photos; this one was not added.").format(
                count=public_notices.PHOTOS_MAX
            )
        )
        return
    photos.append(message.photo[-1].file_id)  # type: ignore[index]
    draft["photos"] = photos
    await _save(state, draft)
    await message.answer(
        _("Photo added ({count}). Send more, or tap Done.").format(count=len(photos)),
        reply_markup=keyboards.inline([keyboards.button(_("✅ Done"), _step("done"))]),
    )


@routes.message(Posting.attachments, F.document)
async def document_added(message: Message, state: FSMContext) -> None:
    document = message.document
    assert document is not None
    if (document.file_size or 0) > public_notices.DOCUMENT_MAX_BYTES:
        await message.answer(
            _("The file is too big: at most {size} MB.").format(
                size=public_notices.DOCUMENT_MAX_BYTES // (1024 * 1024)
            )
        )
        return
    draft = await _draft(state)
    if draft.get("document"):
        await message.answer(_("A notice has one document; this one was not added."))
        return
    draft["document"] = document.file_id
    draft["document_name"] = (document.file_name or "")[:255] or None
    await _save(state, draft)
    await message.answer(
        _("Document added. Send photos, or tap Done."),
        reply_markup=keyboards.inline([keyboards.button(_("✅ Done"), _step("done"))]),
    )


@routes.message(Posting.attachments, ~F.text.startswith("/"))
async def expected_attachment(message: Message) -> None:
    await message.answer(
        _("Send a photo or a document, or tap Done."),
        reply_markup=keyboards.inline([keyboards.button(_("✅ Done"), _step("done"))]),
    )


def _audience_keyboard() -> Any:
    return keyboards.inline(
        [
            keyboards.button(_("The whole township"), _step("township")),
            keyboards.button(_("Choose villages"), _step("villages")),
            keyboards.button(_("One grid"), _step("grid")),
        ],
        1,
    )


@routes.callback_query(Posting.attachments, NoticeStep.filter(F.action == "done"))
async def attachments_done(query: CallbackQuery, state: FSMContext) -> None:
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    await state.set_state(Posting.audience)
    await query.message.answer(_("Who should receive it?"), reply_markup=_audience_keyboard())


async def _villages_keyboard(draft: dict[str, Any], language: str) -> Any:
    chosen = set(draft.get("village_ids") or [])
    villages = await Village.filter(township_id=draft["township_id"], active=True).order_by(
        "position", "id"
    )
    buttons = [
        keyboards.button(
            ("✅ " if village.id in chosen else "") + village.display_name(language),
            _step("village", village.id),
        )
        for village in villages
    ]
    buttons.append(keyboards.button(_("➡️ Continue"), _step("done")))
    return keyboards.inline(buttons, 2)


@routes.callback_query(Posting.audience, NoticeStep.filter())
async def audience_step(
    query: CallbackQuery, callback_data: NoticeStep, state: FSMContext, person: Person
) -> None:
    message = query.message
    if not isinstance(message, Message):
        await _stale(query)
        return
    draft = await _draft(state)
    action, value = callback_data.action, callback_data.value
    township_id = draft["township_id"]
    if action == "township":
        await query.answer()
        draft.update(audience=Audience.TOWNSHIP.value, village_ids=[], grid_id=None)
        await _save(state, draft)
        await _preview(message, state, draft, person)
    elif action == "villages":
        await query.answer()
        draft.update(audience=Audience.VILLAGES.value, village_ids=[], grid_id=None)
        await _save(state, draft)
        await message.answer(
            _("Tap the villages, then Continue."),
            reply_markup=await _villages_keyboard(draft, person.language),
        )
    elif action == "village":
        if not await Village.exists(id=value, township_id=township_id):
            await _stale(query)
            return
        await query.answer()
        chosen = list(draft.get("village_ids") or [])
        chosen = [v for v in chosen if v != value] if value in chosen else [*chosen, value]
        draft["village_ids"] = chosen
        await _save(state, draft)
        await message.edit_reply_markup(
            reply_markup=await _villages_keyboard(draft, person.language)
        )
    elif action == "done":
        if not draft.get("village_ids"):
            await query.answer(_("Choose at least one village."), show_alert=True)
            return
        await query.answer()
        await _preview(message, state, draft, person)
    elif action == "grid":
        await query.answer()
        villages = await Village.filter(township_id=township_id, active=True).order_by(
            "position", "id"
        )
        await message.answer(
            _("Which village is the grid in?"),
            reply_markup=keyboards.inline(
                [
                    keyboards.button(v.display_name(person.language), _step("gridv", v.id))
                    for v in villages
                ],
                2,
            ),
        )
    elif action == "gridv":
        grids = await Grid.filter(
            village_id=value, village__township_id=township_id, active=True
        ).order_by("position", "id")
        if not grids:
            await _stale(query)
            return
        await query.answer()
        await message.answer(
            _("Which grid?"),
            reply_markup=keyboards.inline(
                [
                    keyboards.button(g.display_name(person.language), _step("gridg", g.id))
                    for g in grids
                ],
                2,
            ),
        )
    elif action == "gridg":
        if not await Grid.exists(id=value, village__township_id=township_id):
            await _stale(query)
            return
        await query.answer()
        draft.update(audience=Audience.GRID.value, village_ids=[], grid_id=value)
        await _save(state, draft)
        await _preview(message, state, draft, person)
    else:
        await _stale(query)


def _target(draft: dict[str, Any]) -> public_notices.Target:
    return public_notices.Target(
        township_id=draft["township_id"],
        audience=Audience(draft["audience"]),
        village_ids=list(draft.get("village_ids") or []),
        grid_id=draft.get("grid_id"),
    )


async def _preview(
    message: Message, state: FSMContext, draft: dict[str, Any], person: Person
) -> None:
    count = await public_notices.reach(_target(draft))
    await state.set_state(Posting.preview)
    sample = Notice(
        kind=NoticeKind(draft["kind"]), title=draft["title"], body=draft["body"],
        photos=draft.get("photos") or [], document=draft.get("document"),
    )
    attachments = _("Photos: {photos}; document: {document}").format(
        photos=len(draft.get("photos") or []),
        document=draft.get("document_name") or (_("yes") if draft.get("document") else _("none")),
    )
    await message.answer(
        "\n".join(
            [
                public_notices.message_text(sample, person.language),
                "",
                attachments,
                _("It will reach {count} villagers. Send it?").format(count=count),
            ]
        ),
        reply_markup=keyboards.inline(
            [
                keyboards.button(_("✅ Confirm"), _step("confirm")),
                keyboards.button(_("✖️ Cancel"), _step("cancel")),
            ],
            2,
        ),
    )


@routes.callback_query(Posting.preview, NoticeStep.filter(F.action.in_({"confirm", "cancel"})))
async def decided(
    query: CallbackQuery, callback_data: NoticeStep, state: FSMContext, person: Person
) -> None:
    message = query.message
    if not isinstance(message, Message):
        await _stale(query)
        return
    await query.answer()
    draft = await _draft(state)
    await state.clear()
    await message.edit_reply_markup(reply_markup=None)
    if callback_data.action == "cancel":
        await message.answer(_("Cancelled. Nothing was sent."))
        return
    if await public_notices.poster_of(person) is None:
        await message.answer(_("Your role may not post public notices."))
        return
    notice = await public_notices.publish(
        _target(draft), person.account, kind=NoticeKind(draft["kind"]), title=draft["title"],
        body=draft["body"], photos=draft.get("photos") or [], document=draft.get("document"),
        document_name=draft.get("document_name"),
    )
    await message.answer(
        _("The notice is going out to {count} villagers. You will be told when it has gone "
          "out.").format(count=notice.reach),
        reply_markup=public_notices.withdraw_keyboard(notice, person.language),
    )


@routes.callback_query(StateFilter(Posting), NoticeStep.filter())
async def stale_step(query: CallbackQuery) -> None:
    await _stale(query)


# ---- reading and withdrawing ------------------------------------------------------------------

NOTICES = keyboards.NOTICES


@routes.message(Command("notices"))
@routes.message(Pressed(NOTICES))
async def list_notices(message: Message, state: FSMContext, person: Person) -> None:
    await state.clear()
    township_ids = [official.township_id for official in person.officials]  # type: ignore[attr-defined]
    if township_ids:
        notices = await public_notices.posted_in(township_ids)
    elif person.villager is not None:
        notices = await public_notices.for_villager(person.villager)
    else:
        await message.answer(_("You are not registered yet. Send /start to register."))
        return
    if not notices:
        await message.answer(_("No public notices yet."))
        return
    lines = [_("Public notices, newest first:")]
    buttons = []
    for index, notice in enumerate(notices, start=1):
        kind = _(public_notices.KIND_LABELS[NoticeKind(notice.kind)])
        withdrawn = _(" (withdrawn)") if notice.withdrawn_at is not None else ""
        day = notice.created_at.date().isoformat()
        lines.append(f"{index}. {day} · {kind} · {notice.title}{withdrawn}")
        buttons.append(keyboards.button(str(index), OpenNotice(notice_id=notice.id)))
    await message.answer("\n".join(lines), reply_markup=keyboards.inline(buttons, 5))


async def _readable(notice: Notice, person: Person) -> bool:
    if any(o.township_id == notice.township_id for o in person.officials):  # type: ignore[attr-defined]
        return True
    return person.villager is not None and public_notices.reaches(notice, person.villager)


@routes.callback_query(OpenNotice.filter())
async def open_notice(query: CallbackQuery, callback_data: OpenNotice, person: Person) -> None:
    notice = await Notice.get_or_none(id=callback_data.notice_id)
    if notice is None or not isinstance(query.message, Message) or not await _readable(
        notice, person
    ):
        await _stale(query)
        return
    await query.answer()
    message = query.message
    keyboard = None
    if notice.withdrawn_at is None and public_notices.may_withdraw(notice, person):
        keyboard = public_notices.withdraw_keyboard(notice, person.language)
    await message.answer(
        public_notices.message_text(notice, person.language), reply_markup=keyboard
    )
    if notice.withdrawn_at is not None:
        return
    if len(notice.photos) == 1:
        await message.answer_photo(notice.photos[0])
    elif notice.photos:
        await message.answer_media_group([InputMediaPhoto(media=p) for p in notice.photos])
    if notice.document:
        await message.answer_document(notice.document)


@routes.callback_query(WithdrawNotice.filter())
async def withdraw(query: CallbackQuery, callback_data: WithdrawNotice, person: Person) -> None:
    notice = await Notice.get_or_none(id=callback_data.notice_id)
    if notice is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    if not public_notices.may_withdraw(notice, person):
        await query.answer(
            _("Only its poster or an administrator may withdraw it."), show_alert=True
        )
        return
    await query.answer()
    await public_notices.withdraw(notice, person)
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(
        _("Withdrawn: “{title}”. Villagers who open it see that it was withdrawn.").format(
            title=notice.title
        )
    )

