"""DErrno: DIRAC error table, strerror, cmpError and extension registration."""

import errno
import os
import sys
import types

import pytest

from TornadoServices.Core import DErrno
from TornadoServices.Core.ReturnValues import S_ERROR


@pytest.mark.parametrize(
    "name, code, text",
    [
        ("ECERTFIND", 1103, "Can't find certificate"),
        ("ENOGROUP", 1108, "No DIRAC group"),
        ("ENOAUTH", 1111, "Unauthorized query"),
        ("EVOMS", 1121, "VOMS Error"),
        ("EATOKENFIND", 1150, "Can't find a bearer access token."),
        ("ETOKENTYPE", 1152, "Unsupported access token type."),
        ("EPROXYFIND", 1101, "Can't find proxy"),
        ("EDISET", 1110, "DISET Error"),
    ],
)
def test_dirac_codes(name, code, text):
    assert getattr(DErrno, name) == code
    assert DErrno.dErrorCode[code] == name
    assert DErrno.strerror(code) == text


def test_every_code_has_name_and_description():
    assert set(DErrno.dErrorCode) == set(DErrno.dStrError)
    for code, name in DErrno.dErrorCode.items():
        assert getattr(DErrno, name) == code


def test_strerror_zero_system_and_unknown():
    assert DErrno.strerror(0) == "Undefined error"
    assert DErrno.strerror(errno.EACCES) == os.strerror(errno.EACCES) == "Permission denied"
    assert DErrno.strerror(987654) == "Unknown error 987654"
    assert DErrno.strerror(2**80) == f"Unknown error {2**80}"


def test_cmpError_forms():
    err = S_ERROR(DErrno.ENOAUTH, "go away")
    assert DErrno.cmpError(err, DErrno.ENOAUTH)
    assert not DErrno.cmpError(err, DErrno.ECERTFIND)
    # no Errno: the description is searched in the message
    assert DErrno.cmpError(S_ERROR("Unauthorized query for x"), DErrno.ENOAUTH)
    assert not DErrno.cmpError(S_ERROR("other"), DErrno.ENOAUTH)
    assert DErrno.cmpError("Can't find certificate here", DErrno.ECERTFIND)
    assert DErrno.cmpError(1111, DErrno.ENOAUTH)
    assert not DErrno.cmpError(1112, DErrno.ENOAUTH)
    with pytest.raises(TypeError, match="unsupported error type"):
        DErrno.cmpError(3.5, DErrno.ENOAUTH)


def test_registerErrors_exposes_names_and_messages():
    DErrno.registerErrors(
        {"ETESTEXT": 3901}, {3901: "Test extension error"}, {3901: ["legacy text for the test error"]}
    )
    assert DErrno.ETESTEXT == 3901  # type: ignore[attr-defined]
    assert DErrno.strerror(3901) == "Test extension error"
    assert S_ERROR(3901, "x")["Message"] == "Test extension error ( 3901 : x)"
    assert DErrno.cmpError("a legacy text for the test error happened", 3901)
    # registering the same definition again is harmless
    DErrno.registerErrors({"ETESTEXT": 3901}, {3901: "Test extension error"})


def test_registerErrors_single_mapping_form():
    DErrno.registerErrors({"ETESTPAIR": (3904, "Paired definition")})
    assert DErrno.ETESTPAIR == 3904  # type: ignore[attr-defined]
    assert DErrno.strerror(3904) == "Paired definition"


def test_registerErrors_refuses_conflicts_and_missing_descriptions():
    with pytest.raises(ValueError, match="already ENOAUTH"):
        DErrno.registerErrors({"EMINE": 1111}, {1111: "mine"})
    with pytest.raises(ValueError, match="no description"):
        DErrno.registerErrors({"ENODESC": 3902}, {})
    with pytest.raises(ValueError, match="invalid error definition"):
        DErrno.registerErrors({"not a name": 3903}, {3903: "x"})
    assert not hasattr(DErrno, "ENODESC")


def test_includeExtensionErrors(monkeypatch):
    pkg = types.ModuleType("fakeext_tsv")
    pkg.__path__ = []  # type: ignore[attr-defined]
    core = types.ModuleType("fakeext_tsv.Core")
    core.__path__ = []  # type: ignore[attr-defined]
    ext = types.ModuleType("fakeext_tsv.Core.DErrno")
    ext.extra_dErrName = {"EFAKEEXT": 3950}  # type: ignore[attr-defined]
    ext.extra_dStrError = {3950: "Fake extension failure"}  # type: ignore[attr-defined]
    for mod in (pkg, core, ext):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    DErrno.includeExtensionErrors(["fakeext_tsv", "no_such_extension_tsv"])
    assert DErrno.EFAKEEXT == 3950  # type: ignore[attr-defined]
    assert DErrno.strerror(3950) == "Fake extension failure"
