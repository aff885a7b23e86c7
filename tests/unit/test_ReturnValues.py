"""ReturnValues: S_OK/S_ERROR structures and the conversion helpers."""

import pytest

from TornadoServices.Core import DErrno
from TornadoServices.Core.ReturnValues import (
    DErrorReturnType,
    DOKReturnType,
    DReturnType,
    S_ERROR,
    S_OK,
    SErrorException,
    convertToReturnValue,
    isReturnStructure,
    isSError,
    reprReturnErrorStructure,
    returnSingleResult,
    returnValueOrRaise,
)


def test_S_OK():
    assert S_OK() == {"OK": True, "Value": None}
    assert S_OK([1]) == {"OK": True, "Value": [1]}


def test_S_ERROR_message_only():
    res = S_ERROR("boom")
    assert res["OK"] is False
    assert res["Errno"] == 0
    assert res["Message"] == "boom"
    assert isinstance(res["CallStack"], list) and all(isinstance(line, str) for line in res["CallStack"])
    assert "test_S_ERROR_message_only" in res["CallStack"][-1]


def test_S_ERROR_errno_forms():
    assert S_ERROR(1111, "Unauthorized query")["Message"] == "Unauthorized query ( 1111 : Unauthorized query)"
    assert S_ERROR(13, "No access to X")["Message"] == "Permission denied ( 13 : No access to X)"
    res = S_ERROR(DErrno.ECERTFIND)
    assert res["Errno"] == 1103
    assert res["Message"] == "Can't find certificate ( 1103 : )"
    assert S_ERROR()["Message"] == ""


def test_S_ERROR_explicit_callstack():
    assert S_ERROR("m", callStack=["a", "b"])["CallStack"] == ["a", "b"]
    assert S_ERROR("m", callStack=[])["CallStack"] == []


def test_isReturnStructure_and_isSError():
    assert isReturnStructure(S_OK(1))
    assert isReturnStructure(S_ERROR("x"))
    assert not isReturnStructure({"OK": True})
    assert not isReturnStructure({"OK": False})
    assert not isReturnStructure({"Value": 1})
    assert not isReturnStructure([("OK", True)])
    assert isSError(S_ERROR("x"))
    assert isSError({"OK": True, "Message": "not checked"})
    assert not isSError(S_OK(1))
    assert not isSError("Message")


def test_reprReturnErrorStructure():
    assert reprReturnErrorStructure({"OK": False, "Message": "plain"}) == "plain"
    struct = {"OK": False, "Errno": 1111, "Message": "x", "CallStack": ["l1\n", "l2\n"]}
    assert reprReturnErrorStructure(struct) == "Unauthorized query ( 1111 : x)"
    assert reprReturnErrorStructure(struct, full=True) == "Unauthorized query ( 1111 : x)\nl1\nl2\n"


@pytest.mark.parametrize(
    "value, expected",
    [
        # an int failure is taken as an errno, as DIRAC's S_ERROR does
        ({"Successful": {}, "Failed": {"a": 1}}, {"OK": False, "Errno": 1, "Message": "Operation not permitted ( 1 : )"}),
        ({"Successful": {"b": 2}, "Failed": {}}, {"OK": True, "Value": 2}),
        ({"Successful": {"b": 2}, "Failed": {"a": "bad", "c": "worse"}}, {"OK": False, "Message": "bad"}),
        ({"Successful": {"b": 2, "d": 4}, "Failed": {}}, {"OK": True, "Value": 2}),
        ({"Successful": {}, "Failed": {"a": {"not": "a structure"}}}, {"OK": False, "Message": "{'not': 'a structure'}"}),
        (
            {"Successful": {}, "Failed": {}},
            {"OK": False, "Message": "returnSingleResult: Failed and Successful dictionaries are empty"},
        ),
        ({}, {"OK": False, "Message": "returnSingleResult: Failed and Successful dictionaries are empty"}),
    ],
)
def test_returnSingleResult(value, expected):
    res = returnSingleResult(S_OK(value))
    for key, val in expected.items():
        assert res[key] == val


def test_returnSingleResult_passes_errors_and_structures_through():
    err = S_ERROR("kaput")
    assert returnSingleResult(err) is err
    inner = S_ERROR(1111, "nope")
    assert returnSingleResult(S_OK({"Failed": {"lfn": inner}, "Successful": {}})) is inner


def test_SErrorException():
    exc = SErrorException("plain message")
    assert exc.result["Message"] == "plain message" and exc.result["Errno"] == 0
    exc = SErrorException("no auth", errCode=DErrno.ENOAUTH)
    assert exc.result["Errno"] == 1111
    assert exc.result["Message"] == "Unauthorized query ( 1111 : no auth)"
    err = S_ERROR("given")
    assert SErrorException(err).result is err
    assert "given" in str(SErrorException(err))


def test_returnValueOrRaise_value_and_SErrorException():
    assert returnValueOrRaise(S_OK(5)) == 5
    err = S_ERROR("broken")
    with pytest.raises(SErrorException) as info:
        returnValueOrRaise(err)
    assert info.value.result is err


def test_returnValueOrRaise_reraises_original_instance():
    original = KeyError("the key that was missing")

    @convertToReturnValue
    def fails():
        raise original

    res = fails()
    with pytest.raises(KeyError) as info:
        returnValueOrRaise(res)
    assert info.value is original
    assert info.value.args == ("the key that was missing",)


def test_convertToReturnValue():
    @convertToReturnValue
    def ok(x: int) -> int:
        """Double."""
        return 2 * x

    @convertToReturnValue
    def sError():
        raise SErrorException("explicit", errCode=DErrno.EVALUE)

    @convertToReturnValue
    def crash():
        raise ValueError("bad value")

    assert ok(3) == {"OK": True, "Value": 6}
    assert ok.__name__ == "ok" and ok.__doc__ == "Double."
    assert ok.__annotations__["return"] is DReturnType
    res = sError()
    assert res["Errno"] == DErrno.EVALUE and "explicit" in res["Message"]
    res = crash()
    assert res["OK"] is False
    assert res["Message"] == "ValueError('bad value')"
    excType, excValue, excTb = res["ExecInfo"]
    assert excType is ValueError and str(excValue) == "bad value" and excTb is not None
    # the call stack is the exception's traceback, ending where it was raised
    assert "raise ValueError" in res["CallStack"][-1]


def test_convertToReturnValue_does_not_touch_wrapped_annotations():
    def f() -> int:
        return 1

    convertToReturnValue(f)
    assert f.__annotations__["return"] is int


def test_typing_aliases_are_subscriptable():
    assert DReturnType[int] is not None
    assert DOKReturnType[str] is not None
    assert DErrorReturnType is not None
