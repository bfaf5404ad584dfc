"""Invitation tokens: single use, expiring, unforgeable; a refusal binds nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.invitations import InvitationRefused, Refusal, invite, now, redeem
from bot.models import Account, Invitation, Official, Township


@pytest.fixture
async def official(database: str) -> Official:
    township = await Township.create(code="BL", name="坂里乡")
    return await Official.create(township=township, code="su", name="苏进侨", role="dispatcher")


async def _account(telegram_id: int) -> Account:
    return await Account.create(id=telegram_id, first_name="x", language="zh-hans")


async def test_a_valid_token_binds_the_account_once(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    assert made.link("villagebot") == f"https://t.me/villagebot?start={made.token}"
    assert len(made.token) <= 64 and made.token.replace("-", "").replace("_", "").isalnum()
    account = await _account(501)
    bound = await redeem(made.token, account)
    assert bound.id == official.id
    assert (await Official.get(id=official.id)).account_id == 501  # type: ignore[attr-defined]
    # The same person opening the link again is told it worked, not refused.
    assert (await redeem(made.token, account)).id == official.id


async def test_a_used_token_binds_nobody_else(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    await redeem(made.token, await _account(501))
    with pytest.raises(InvitationRefused) as refused:
        await redeem(made.token, await _account(502))
    assert refused.value.reason == Refusal.USED
    assert (await Official.get(id=official.id)).account_id == 501  # type: ignore[attr-defined]


async def test_an_expired_token_binds_nothing(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    with pytest.raises(InvitationRefused) as refused:
        await redeem(made.token, await _account(501), at=now() + timedelta(days=7, seconds=1))
    assert refused.value.reason == Refusal.EXPIRED
    assert (await Official.get(id=official.id)).account_id is None  # type: ignore[attr-defined]
    assert (await Invitation.get(official_id=official.id)).used_at is None


@pytest.mark.parametrize(
    "token",
    ["inv-" + "A" * 32, "inv-short", "hello", "inv-../../etc/passwd" + "x" * 20, ""],
)
async def test_forged_tokens_bind_nothing(official: Official, token: str) -> None:
    await invite(official, ttl_days=7)
    with pytest.raises(InvitationRefused) as refused:
        await redeem(token, await _account(501))
    assert refused.value.reason == Refusal.UNKNOWN
    assert (await Official.get(id=official.id)).account_id is None  # type: ignore[attr-defined]


async def test_only_the_hash_is_stored(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    stored = await Invitation.get(official_id=official.id)
    assert made.token not in stored.token_hash and len(stored.token_hash) == 64


async def test_an_official_bound_to_someone_else_is_not_taken_over(official: Official) -> None:
    first = await invite(official, ttl_days=7)
    await redeem(first.token, await _account(501))
    second = await invite(official, ttl_days=7)
    with pytest.raises(InvitationRefused) as refused:
        await redeem(second.token, await _account(502))
    assert refused.value.reason == Refusal.TAKEN


async def test_an_inactive_official_cannot_join(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    official.active = False
    await official.save()
    with pytest.raises(InvitationRefused) as refused:
        await redeem(made.token, await _account(501))
    assert refused.value.reason == Refusal.INACTIVE


async def test_two_people_racing_with_one_link_one_wins(official: Official) -> None:
    made = await invite(official, ttl_days=7)
    accounts = [await _account(601), await _account(602)]
    results = await asyncio.gather(
        *(redeem(made.token, a) for a in accounts), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, Official)]
    assert len(winners) == 1
    assert all(isinstance(r, InvitationRefused) for r in results if r not in winners)
