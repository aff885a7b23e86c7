"""The dispatcher's pure functions: method table, DISET types_ checks, argument counts, CallStack stripping."""
from __future__ import annotations

import pytest

from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Server.private.Dispatcher import (
    buildMethodTable,
    checkArgumentCount,
    checkExpectedArgumentTypes,
    isRawContentRequested,
    stripCallStacks,
)
from TornadoServices.Server.TornadoService import TornadoService


class Handler(TornadoService):
    types_plain = [int, (str, type(None))]

    def export_plain(self, a, b=None):
        return S_OK()

    async def export_coro(self, *args):
        return S_OK()

    def export_kwonly(self, *, needed):
        return S_OK()

    export_notCallable = 5


def test_method_table():
    table = buildMethodTable(Handler)
    assert {"plain", "coro", "kwonly", "ping", "echo", "whoami"} <= set(table)
    assert "notCallable" not in table
    assert table["plain"].isCoroutine is False and table["coro"].isCoroutine is True
    assert table["ping"].isCoroutine is True
    assert (table["plain"].minArgs, table["plain"].maxArgs) == (1, 2)
    assert (table["coro"].minArgs, table["coro"].maxArgs) == (0, None)
    assert table["plain"].typesList == (int, (str, type(None)))


def test_argument_counts():
    table = buildMethodTable(Handler)
    assert checkArgumentCount(table["plain"], 1) is None
    assert checkArgumentCount(table["plain"], 3) == "Method plain takes 1 to 2 argument(s), 3 given"
    assert checkArgumentCount(table["plain"], 0) == "Method plain takes 1 to 2 argument(s), 0 given"
    assert checkArgumentCount(table["coro"], 50) is None
    assert "keyword-only" in checkArgumentCount(table["kwonly"], 0)


@pytest.mark.parametrize(
    "types, args, expected",
    [
        ([int], [1], None),
        ([int], [True], None),  # bool is an int, as in DISET
        ([int], ["1"], "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, expected <class 'int'>"),
        ([None, str], [object(), "x"], None),
        ([[int, float]], [1.5], None),
        ([(int, float)], ["x"], "Type mismatch in parameter 0 (starting with param 0) Received <class 'str'>, expected (<class 'int'>, <class 'float'>)"),
        ([int, int], [1], "Function m expects at least 2 arguments"),
        ([int], [1, "extra"], None),
        ([], [1, 2], None),
    ],
)
def test_diset_types(types, args, expected):
    assert checkExpectedArgumentTypes("m", types, args) == expected


def test_bad_types_declaration_is_reported():
    assert "types_m[0]" in checkExpectedArgumentTypes("m", ["notAType"], [1])


def test_strip_call_stacks_copies_only_what_changes():
    inner = S_ERROR("inner")
    untouched = {"plain": [1, 2, {"x": 1}]}
    result = S_OK({"inner": inner, "list": [S_ERROR("in list")], "untouched": untouched, "tuple": (S_ERROR("t"),)})
    stripped = stripCallStacks(result)
    assert "CallStack" in inner and "CallStack" in result["Value"]["list"][0]  # originals unchanged
    assert "CallStack" not in stripped["Value"]["inner"]
    assert "CallStack" not in stripped["Value"]["list"][0]
    assert "CallStack" not in stripped["Value"]["tuple"][0]
    assert stripped["Value"]["untouched"] is untouched
    top = S_ERROR("top")
    top["ExecInfo"] = (None, None, None)
    assert stripCallStacks(top) == {"OK": False, "Errno": 0, "Message": "top"}


def test_strip_leaves_plain_structures_alone():
    value = {"OK": "not a return structure", "CallStack": 1}
    assert stripCallStacks(value) is value
    data = [1, "a", {"b": [2]}]
    assert stripCallStacks(data) is data


@pytest.mark.parametrize("text, expected", [("True", True), ("1", True), ("yes", True), ("False", False), ("0", False), ("no", False), ("", False), (None, False), (" false ", False)])
def test_raw_content_words(text, expected):
    assert isRawContentRequested(text) is expected
