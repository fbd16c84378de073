"""The shared integer and choice checks, and that the core writes no copies of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dave_lightning
from dave_lightning._common import check_choice, check_int
from dave_lightning.errors import BadInputError, ConfigurationError

PACKAGE = Path(dave_lightning.__file__).parent
# owned and consolidated on the callbacks branch
ELSEWHERE = ("callbacks", "pixel_deletion.py")


def test_check_int_raises_the_asked_class_and_writes_the_value_as_asked() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^`--epochs`: expected an integer >= 1, received 0\.$"
    ):
        check_int("--epochs", 0, 1, error=ConfigurationError, shown=repr)
    with pytest.raises(BadInputError, match=r"`seed`: expected an integer, received float 0\.5"):
        check_int("seed", 0.5)
    assert check_int("seed", 3, shown=repr) == 3


def test_check_choice_words_the_choices_as_asked() -> None:
    with pytest.raises(BadInputError, match=r"^`order`: expected 'a' or 'b', received 'c'\.$"):
        check_choice("order", "c", ("a", "b"), shown=repr, expected="'a' or 'b'")
    with pytest.raises(ConfigurationError, match=r"expected one of 'a', 'b', received str 'c'"):
        check_choice("order", "c", ("a", "b"), error=ConfigurationError)
    assert check_choice("order", "b", ("a", "b")) == "b"


def test_no_module_writes_its_own_integer_check() -> None:
    own_check = re.compile(r"isinstance\((\w+), bool\) or not isinstance\(\1, int\)")
    copies = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "_common.py"
        and not any(part in path.parts for part in ELSEWHERE)
        and own_check.search(path.read_text())
    ]
    assert copies == []
