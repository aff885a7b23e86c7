"""Encoding (JEncode): byte compatibility with DIRAC, allow-listed objects, malformed input."""

import base64
import datetime
import decimal
import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from TornadoServices.Core.Encoding import (
    DecodeError,
    EncodeError,
    JSerializable,
    decode,
    encode,
    registerSerializable,
    strToFloatDict,
    strToIntDict,
)


class Point(JSerializable):
    """A registered (by subclassing) serialisable object."""

    _attrToSerialize = ["x", "y", "label"]

    def __init__(self, x=None, y=None, label=None):
        self.x = x
        self.y = y
        self.label = label
        self.notSent = "local"


class Hidden(JSerializable, register=False):
    """A serialisable class that opted out of the decoding allow-list."""

    _attrToSerialize = ["v"]

    def __init__(self):
        self.v = 1


# ---------------------------------------------------------------- encoding, byte for byte


def test_exact_bytes_of_a_sample_structure():
    sample = {
        "OK": True,
        "Value": {
            "nested": {"tuple": (1, 2.5, None, True, False), "list": [["a"], {}]},
            "when": datetime.datetime(2024, 10, 17, 8, 5, 3, 123456),
            "day": datetime.date(2024, 2, 29),
            "blob": b"\x00\x01binary\xff",
            "text": "caf\u00e9 \u2603 \U0001f600",
            3: "int key",
        },
    }
    expected = (
        '{"OK": true, "Value": {"nested": {"tuple": [1, 2.5, null, true, false], "list": [["a"], {}]}, '
        '"when": {"__dCls": "dt", "obj": "2024-10-17 08:05:03"}, '
        '"day": {"__dCls": "date", "obj": "2024-02-29"}, '
        '"blob": {"__dCls": "b64", "obj": "AAFiaW5hcnn/"}, '
        '"text": "caf\\u00e9 \\u2603 \\ud83d\\ude00", "3": "int key"}}'
    )
    assert encode(sample) == expected


def test_matches_json_dumps_defaults():
    value = {"z": 1, "a": [1.0, -0.0, 1e300, float("inf"), float("-inf")], "s": "\"\\\n\t/"}
    assert encode(value) == json.dumps(value)
    assert "Infinity" in encode(value)


def test_nan_like_dirac():
    text = encode([float("nan")])
    assert text == "[NaN]"
    assert math.isnan(decode(text)[0][0])
    assert decode("[Infinity, -Infinity]")[0] == [float("inf"), float("-inf")]


def test_datetime_drops_microseconds_and_tzinfo():
    aware = datetime.datetime(2024, 1, 1, 12, 0, 0, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert encode(aware) == '{"__dCls": "dt", "obj": "2024-01-01 12:00:00"}'
    assert decode(encode(aware))[0] == datetime.datetime(2024, 1, 1, 12, 0, 0)


def test_small_years_are_zero_padded():
    assert encode(datetime.date(999, 1, 2)) == '{"__dCls": "date", "obj": "0999-01-02"}'
    assert decode(encode(datetime.datetime(5, 1, 1)))[0] == datetime.datetime(5, 1, 1)


def test_jserializable_encoding():
    assert encode(Point(1, (2, 3))) == (
        '{"__dCls": "Point", "__dMod": "%s", "x": 1, "y": [2, 3]}' % Point.__module__
    )
    # None values are not sent
    assert '"label"' not in encode(Point(1, 2))


def test_decode_returns_length_of_input():
    text = '{"a": 1}'
    assert decode(text) == ({"a": 1}, len(text))
    data = '"\u00e9"'.encode()
    assert decode(data) == ("\u00e9", len(data))
    assert decode(bytearray(b"[1]")) == ([1], 3)


def test_decode_whitespace_around_value():
    assert decode("  [1, 2]\n")[0] == [1, 2]
    assert decode(b'{"a": 1}\r\n')[0] == {"a": 1}


def test_decode_markers():
    text = (
        '[{"__dCls": "dt", "obj": "2024-10-17 08:05:03"}, {"__dCls": "date", "obj": "2024-02-29"},'
        ' {"__dCls": "b64", "obj": "AAFiaW5hcnn/"}, {"__dCls": "", "keep": 1}, {"__dCls": null, "keep": 2}]'
    )
    assert decode(text)[0] == [
        datetime.datetime(2024, 10, 17, 8, 5, 3),
        datetime.date(2024, 2, 29),
        b"\x00\x01binary\xff",
        {"keep": 1},
        {"keep": 2},
    ]


def test_decode_lenient_datetime_like_strptime():
    assert decode('{"__dCls": "dt", "obj": "2024-1-5 3:4:5"}')[0] == datetime.datetime(2024, 1, 5, 3, 4, 5)


@pytest.mark.parametrize(
    "text",
    [
        '{"__dCls": "dt", "obj": "yesterday"}',
        '{"__dCls": "dt", "obj": "2024-13-01 00:00:00"}',
        '{"__dCls": "dt"}',
        '{"__dCls": "dt", "obj": 5}',
        '{"__dCls": "date", "obj": "2024-02-30"}',
        '{"__dCls": "b64", "obj": "not base64!"}',
        '{"__dCls": "b64", "obj": "AAE"}',
        '{"__dCls": "b64", "obj": [1]}',
        '{"__dCls": "Point"}',
        '{"__dCls": ["x"], "__dMod": "y"}',
    ],
)
def test_bad_markers_raise_DecodeError(text):
    with pytest.raises(DecodeError):
        decode(text)


def test_registered_class_round_trip_and_only_listed_attributes():
    obj, _ = decode(encode({"p": Point(1, [2, 3], "lbl")}))
    point = obj["p"]
    assert type(point) is Point
    assert (point.x, point.y, point.label) == (1, [2, 3], "lbl")
    crafted = (
        '{"__dCls": "Point", "__dMod": "%s", "x": 7, "__dict__": {"evil": 1}, "notSent": "remote", "y": null}'
        % Point.__module__
    )
    point = decode(crafted)[0]
    assert point.x == 7 and point.y is None and point.notSent == "local"
    assert not hasattr(point, "evil")


def test_registerSerializable_alias():
    @registerSerializable(module="DIRAC.Somewhere.Module", name="DiracPoint")
    class Aliased(JSerializable):
        _attrToSerialize = ["v"]

    got = decode('{"__dCls": "DiracPoint", "__dMod": "DIRAC.Somewhere.Module", "v": 3}')[0]
    assert type(got) is Aliased and got.v == 3
    registerSerializable(Hidden, module="tests.alias", name="HiddenAlias")
    assert decode('{"__dCls": "HiddenAlias", "__dMod": "tests.alias", "v": 2}')[0].v == 2
    with pytest.raises(TypeError, match="subclass of JSerializable"):
        registerSerializable(dict)


def test_opted_out_class_is_refused():
    with pytest.raises(DecodeError, match="Hidden"):
        decode(encode(Hidden()))


class _ImportSpy:
    """A meta path finder that records every import attempt."""

    def __init__(self):
        self.names = []

    def find_spec(self, name, path=None, target=None):
        self.names.append(name)
        return None


@pytest.mark.parametrize(
    "module, cls",
    [("os", "system"), ("xml.dom.pulldom", "PullDOM"), ("tsv_never_existing_module", "Thing"), ("subprocess", "Popen")],
)
def test_unknown_class_refused_without_importing(module, cls):
    before = set(sys.modules)
    spy = _ImportSpy()
    sys.meta_path.insert(0, spy)
    try:
        with pytest.raises(DecodeError) as info:
            decode('{"a": [{"__dCls": "%s", "__dMod": "%s", "arg": "rm -rf /"}]}' % (cls, module))
    finally:
        sys.meta_path.remove(spy)
    assert spy.names == []
    assert set(sys.modules) == before
    assert repr(cls) in str(info.value) and repr(module) in str(info.value)
    assert "registerSerializable" in str(info.value)


def test_pulldom_not_imported_by_refusal(monkeypatch):
    monkeypatch.delitem(sys.modules, "xml.dom.pulldom", raising=False)  # run even if something imported it
    with pytest.raises(DecodeError):
        decode('{"__dCls": "PullDOM", "__dMod": "xml.dom.pulldom"}')
    assert "xml.dom.pulldom" not in sys.modules


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "data",
    [
        "",
        "   ",
        "{",
        '{"a": 1',
        '{"a": [1, 2}',
        "[1, 2] 3",
        "{'single': 1}",
        '"unterminated',
        '"control \x01 char"',
        b"\xff\xfe[]",
        b'"\xc3"',
        b'["\xed\xa0\x80"]',
        "1" * 100000,
        "[" + "1" * 5000 + "]",
        "[" * 100000 + "]" * 100000,
        '{"a":' * 100000 + "1" + "}" * 100000,
        "[" * 100000,
    ],
    ids=lambda d: repr(d[:12]) + (f"...({len(d)})" if len(d) > 12 else ""),
)
def test_malformed_input_raises_DecodeError(data):
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_error_is_a_value_error_and_named():
    with pytest.raises(ValueError, match="malformed JSON"):
        decode("[1,")
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(b"[\"\xff\"]")
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode("[" * 100000 + "]" * 100000)


def test_decode_rejects_non_text_input():
    with pytest.raises(TypeError):
        decode(12)  # type: ignore[arg-type]


def test_lone_surrogates_accepted_and_reencoded():
    value = decode('"\\ud800x"')[0]
    assert value == "\ud800x"
    assert encode(value) == '"\\ud800x"'


# ---------------------------------------------------------------- unencodable values


@pytest.mark.parametrize(
    "value, typeName",
    [
        ({1, 2}, "set"),
        (decimal.Decimal("1.5"), "Decimal"),
        (datetime.time(12, 0), "time"),
        ({"nested": [frozenset()]}, "frozenset"),
        (object(), "object"),
        (bytearray(b"x"), "bytearray"),
    ],
)
def test_unencodable_values_raise_EncodeError(value, typeName):
    with pytest.raises(EncodeError, match=typeName):
        encode(value)


def test_encode_errors_are_type_errors():
    with pytest.raises(TypeError, match="keys must be"):
        encode({(1, 2): "tuple key"})
    circular = []
    circular.append(circular)
    with pytest.raises(EncodeError, match="circular"):
        encode(circular)


# ---------------------------------------------------------------- helpers


def test_strToIntDict_and_strToFloatDict():
    received = decode(encode({1: "a", 20: "b"}))[0]
    assert received == {"1": "a", "20": "b"}
    assert strToIntDict(received) == {1: "a", 20: "b"}
    assert strToFloatDict({"1.5": 1, "2": 2}) == {1.5: 1, 2.0: 2}


# ---------------------------------------------------------------- round trips (hypothesis)

_keys = st.text(max_size=8).filter(lambda k: k != "__dCls")
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
_datetimes = st.datetimes(timezones=st.none()).map(lambda d: d.replace(microsecond=0))
_dates = st.dates()
_leaves = _scalars | st.binary(max_size=40) | _datetimes | _dates


def _jsonShape(value):
    """What a value looks like after a round trip: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_jsonShape(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonShape(v) for k, v in value.items()}
    return value


@settings(max_examples=200, deadline=None)
@given(st.recursive(_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(_keys, c, max_size=5), max_leaves=30))
def test_round_trip_json_native(value):
    text = encode(value)
    assert text == json.dumps(value)
    assert decode(text)[0] == value
    assert decode(text.encode("utf-8"))[0] == value


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        _leaves,
        lambda c: st.lists(c, max_size=5) | st.tuples(c, c) | st.dictionaries(_keys, c, max_size=5),
        max_leaves=30,
    )
)
def test_round_trip_with_markers(value):
    text = encode(value)
    assert text.isascii()
    assert decode(text)[0] == _jsonShape(value)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(data):
    try:
        decode(data)
    except DecodeError:
        pass


def _referenceDefault(obj):
    """The JEncode fallback as the specification describes it, used as an oracle for byte compatibility."""
    if isinstance(obj, datetime.datetime):
        return {"__dCls": "dt", "obj": obj.strftime("%Y-%m-%d %H:%M:%S")}
    if isinstance(obj, datetime.date):
        return {"__dCls": "date", "obj": obj.strftime("%Y-%m-%d")}
    if isinstance(obj, bytes):
        return {"__dCls": "b64", "obj": base64.b64encode(obj).decode()}
    raise TypeError(type(obj))


_oracleLeaves = (
    _scalars
    | st.binary(max_size=20)
    | st.datetimes(min_value=datetime.datetime(1000, 1, 1), timezones=st.none())
    | st.dates(min_value=datetime.date(1000, 1, 1))
)
_oracleKeys = st.text(max_size=6) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        _oracleLeaves,
        lambda c: st.lists(c, max_size=4) | st.tuples(c) | st.dictionaries(_oracleKeys, c, max_size=4),
        max_leaves=25,
    )
)
def test_bytes_identical_to_reference_json_dumps(value):
    assert encode(value) == json.dumps(value, default=_referenceDefault)


def test_datetime_text_cache_gives_the_same_bytes():
    """Whole-second datetimes reuse their text: every encoding still equals the uncached form."""
    class Later(datetime.datetime):
        pass

    def plain(value: datetime.datetime) -> str:
        value = datetime.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
        return '{"__dCls": "dt", "obj": "' + value.isoformat(" ") + '"}'

    base = datetime.datetime(2024, 10, 17, 8, 5, 3)
    values = [base + datetime.timedelta(seconds=step) for step in range(600)]  # more than the cache holds
    values += [
        base,
        base.replace(microsecond=999999),
        base.replace(fold=1),
        base.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        Later(2024, 10, 17, 8, 5, 3),
        datetime.datetime(5, 1, 1),
    ]
    for _ in range(2):
        for value in values:
            assert encode(value) == plain(value)
            assert encode([value, {"t": value}]) == f'[{plain(value)}, {{"t": {plain(value)}}}]'
