"""The README's directory sample is a valid file, so the documentation cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from bot.directory import load_directory

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_directory_sample_in_the_readme_is_valid() -> None:
    sample = re.search(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert sample is not None
    directory = load_directory(sample.group(1))
    assert directory.township.code == "BL"
    assert [unit.code for unit in directory.units][:1] == ["zhengda-g1"]
