"""Property-based fuzzing of the request decoder, in process (no sockets), with hypothesis.

The decoder is the server's own code run in the order ``TornadoService._dispatch`` runs it: form parsing
(``_parseForm``: urlencoded or multipart, UTF-8 fields), the ``method`` lookup (body, else query string),
JEncode ``args`` decoding (``_decodeArgs``), the ``types_`` check and the arity check. Whatever the bytes,
the outcome must be either a valid call (a known method and an argument list that passes the checks) or a
400/501 S_ERROR that JEncode can send -- never another exception. ``Encoding.decode`` is fuzzed on its own
too: only ``DecodeError``, and whatever it returns can be encoded again or is refused with ``EncodeError``.

Examples are bounded (``max_examples``) so the default run stays fast; ``tests/fuzz`` holds an atheris
entry point for long coverage-guided runs.
"""
from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPHeaders

from TornadoServices.Core.Encoding import DecodeError, EncodeError, decode, encode
from TornadoServices.Server.private.Dispatcher import buildMethodTable, checkArgumentCount, checkExpectedArgumentTypes
from TornadoServices.Server.TornadoService import TornadoService, _RequestFailed

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "cs" / "extensions") not in sys.path:
    sys.path.insert(0, str(REPO / "cs" / "extensions"))

from TornadoExample.FrameworkSystem.Service.DummyHandler import DummyHandler  # noqa: E402

from SecurityProbeHandler import SecurityProbeHandler  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
METHODS = {**buildMethodTable(SecurityProbeHandler), **buildMethodTable(DummyHandler)}
FORM = "application/x-www-form-urlencoded"


class _Decoder:
    """The request-decoding methods of TornadoService on a fake request (no Tornado, no socket)."""

    _parseForm = TornadoService._parseForm
    _queryField = TornadoService._queryField
    _lookupMethod = TornadoService._lookupMethod
    _decodeArgs = staticmethod(TornadoService._decodeArgs)
    _fullComponentName = "Framework/Dummy"

    def __init__(self, contentType: str, body: bytes, query: Optional[dict[str, list[bytes]]] = None) -> None:
        headers = HTTPHeaders({"Content-Type": contentType}) if contentType else HTTPHeaders()
        self.request = SimpleNamespace(headers=headers, query_arguments=query or {})
        self._chunks = [body] if body else []
        self._runtime = SimpleNamespace(methods=METHODS)


def decodeRequest(contentType: str, body: bytes, query: Optional[dict[str, list[bytes]]] = None) -> tuple[Any, list]:
    """(MethodInfo, args) of a valid call; raise _RequestFailed as the server would answer."""
    from TornadoServices.Core.ReturnValues import S_ERROR

    decoder = _Decoder(contentType, body, query)
    fields = decoder._parseForm()
    methodName = fields.get("method")
    if methodName is None:
        methodName = decoder._queryField("method")
    info = decoder._lookupMethod(methodName)
    args = decoder._decodeArgs(fields.get("args"))
    if info.hasTypes:
        error = checkExpectedArgumentTypes(info.name, info.typesList, args)
        if error:
            raise _RequestFailed(400, S_ERROR(error))
    error = checkArgumentCount(info, len(args))
    if error:
        raise _RequestFailed(400, S_ERROR(error))
    return info, args


def assertValidOutcome(contentType: str, body: bytes, query: Optional[dict[str, list[bytes]]] = None) -> None:
    try:
        info, args = decodeRequest(contentType, body, query)
    except _RequestFailed as failure:
        assert failure.status in (400, 501), failure.status
        result = failure.result
        assert result["OK"] is False and isinstance(result["Message"], str) and result["Message"]
        encode({key: value for key, value in result.items() if key != "CallStack"})  # the answer can be sent
        return
    assert info.name in METHODS and isinstance(args, list)
    assert checkArgumentCount(info, len(args)) is None


# ---- strategies -------------------------------------------------------------------------------------------
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
_markers = st.fixed_dictionaries(
    {"__dCls": st.sampled_from(["dt", "date", "b64", "", "X509Chain", "Popen"]) | st.text(max_size=8)},
    optional={"__dMod": st.sampled_from(["os", "subprocess", "jencodeCanary"]) | st.text(max_size=8), "obj": _scalars},
)
_values = st.recursive(
    _scalars | _markers,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@st.composite
def jsonishText(draw) -> str:
    """JSON text that is valid, damaged, absurdly deep or numerically huge."""
    kind = draw(st.sampled_from(["valid", "damaged", "deep", "bignumber", "raw"]))
    if kind == "valid":
        return json.dumps(draw(_values))
    if kind == "damaged":
        text = json.dumps(draw(_values))
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.text(max_size=5)) + text[cut + draw(st.integers(0, 3)) :]
    if kind == "deep":
        depth = draw(st.sampled_from([10, 500, 990, 1000, 3000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return opener * depth + closer * draw(st.sampled_from([depth, depth - 1, 0]))
    if kind == "bignumber":
        digits = draw(st.sampled_from([10, 4300, 4301, 100_000]))
        return "[" + draw(st.sampled_from(["", "-"])) + "9" * digits + draw(st.sampled_from(["", ".5", "e999", "e-999"])) + "]"
    return draw(st.text(max_size=40))


_methodNames = st.sampled_from(sorted(METHODS)) | st.sampled_from(["initializeHandler", "_authorize", "prepare", "__init__", ""]) | st.text(max_size=12)
_fieldNames = st.sampled_from(["method", "args", "extraCredentials", "clientVO", "clientSetup", "rawContent"]) | st.text(max_size=6)


@st.composite
def forms(draw) -> dict[str, str]:
    fields = draw(st.dictionaries(_fieldNames, st.text(max_size=20), max_size=4))
    if draw(st.booleans()):
        fields["method"] = draw(_methodNames)
    if draw(st.booleans()):
        fields["args"] = draw(jsonishText())
    return fields


# ---- properties ---------------------------------------------------------------------------------------------
@FUZZ
@given(body=st.binary(max_size=512), contentType=st.sampled_from([FORM, "multipart/form-data; boundary=b", "multipart/form-data", "text/plain", ""]))
def test_arbitrary_bytes_give_a_call_or_an_s_error(body, contentType):
    assertValidOutcome(contentType, body)


@FUZZ
@given(fields=forms())
def test_urlencoded_forms_give_a_call_or_an_s_error(fields):
    assertValidOutcome(FORM, urllib.parse.urlencode(fields).encode("utf-8", "surrogatepass"))


@FUZZ
@given(fields=forms(), boundary=st.sampled_from(["b0undary", "x"]))
def test_multipart_forms_give_a_call_or_an_s_error(fields, boundary):
    parts = []
    for name, value in fields.items():
        quoted = name.replace('"', "")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n\r\n{value}\r\n'.encode("utf-8", "surrogatepass"))
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    assertValidOutcome(f"multipart/form-data; boundary={boundary}", body)


@FUZZ
@given(method=st.binary(max_size=24), args=st.binary(max_size=64))
def test_query_string_method_and_raw_args_bytes(method, args):
    assertValidOutcome(FORM, b"args=" + urllib.parse.quote_from_bytes(args).encode(), {"method": [method]})


@FUZZ
@given(data=st.binary(max_size=256) | jsonishText().map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_encoding_decode_raises_only_decode_error_and_its_output_reencodes(data):
    try:
        value, length = decode(data)
    except DecodeError:
        return
    assert length == len(data)
    try:
        encode(value)
    except EncodeError:
        pass  # e.g. nesting that decodes but is too deep to encode again: refused cleanly


def test_known_hard_inputs_are_handled():
    """Fixed seeds the strategies might miss: every one must be a call or an S_ERROR."""
    hard = [
        b"method=echo&args=" + b"[" * 100_000,
        b"method=echo&args=%5B%22%5Cud800%22%5D",
        b"method=echo&args=[" + b"9" * 100_000 + b"]",
        b'method=echo&args=[{"__dCls": "IMPORTED", "__dMod": "jencodeCanary"}]',
        b"method=echo&args=%FF",
        b"method=add&args=[1, 2.5]",
        b"method=add&args=[true, 1]",
        b"method=sleep&args=[NaN]",
        b"method=echo&args=[1e999]",
        b"method=\x00&args=[]",
        b"method=echo&method=ping&args=[1]",
    ]
    for body in hard:
        assertValidOutcome(FORM, body)
    assert "jencodeCanary" not in sys.modules
