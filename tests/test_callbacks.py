"""Button payloads fit Telegram's 64 bytes and old versions fail closed."""

from __future__ import annotations

import pytest

from bot.callbacks import MAX_CALLBACK_BYTES, WORST_CASES, ChooseVillage


@pytest.mark.parametrize("payload", WORST_CASES, ids=lambda p: type(p).__name__)
def test_the_largest_payload_fits(payload: object) -> None:
    packed = payload.pack()  # type: ignore[attr-defined]
    assert len(packed.encode()) <= MAX_CALLBACK_BYTES
    assert type(payload).unpack(packed) == payload


def test_prefixes_are_unique_and_versioned() -> None:
    prefixes = [type(p).__prefix__ for p in WORST_CASES]  # type: ignore[attr-defined]
    assert len(prefixes) == len(set(prefixes))
    assert all(prefix[-1].isdigit() for prefix in prefixes)


def test_an_older_version_does_not_parse() -> None:
    with pytest.raises(ValueError):
        ChooseVillage.unpack("v0:12")
