"""JEncode: DIRAC's JSON wire encoding, byte-compatible with ``DIRAC.Core.Utilities.JEncode``.

Output is what ``json.dumps`` gives with its defaults (ASCII only, ``", "``/``": "`` separators, keys in
insertion order, ``NaN``/``Infinity`` as bare tokens, which the decoder accepts back as DIRAC's does),
plus marker objects for the types JSON lacks:

* ``datetime`` -> ``{"__dCls": "dt", "obj": "YYYY-MM-DD HH:MM:SS"}`` (microseconds and tzinfo dropped);
* ``date`` -> ``{"__dCls": "date", "obj": "YYYY-MM-DD"}``; ``bytes`` -> ``{"__dCls": "b64", "obj": base64}``;
* a :class:`JSerializable` -> ``{"__dCls": ClassName, "__dMod": module, attr: value, ...}``.

Tuples are sent as lists. Decoding differs from DIRAC where DIRAC is unsafe: a class marker is only
turned back into an object when its ``(module, class)`` pair is in the allow-list. Every subclass of
:class:`JSerializable` enters the allow-list when it is defined (``class X(JSerializable, register=False)``
opts out); :func:`registerSerializable` adds a class under another name, e.g. the module path DIRAC
uses for it. Nothing is ever imported because a peer named it, and only the attributes listed in
``_attrToSerialize`` are set on the rebuilt object (other keys are ignored).

Errors: :class:`DecodeError` (a ``ValueError``) is the only exception for bad input: malformed JSON,
invalid UTF-8, nesting deeper than the interpreter's recursion limit, integers longer than CPython's
digit limit, bad markers, refused classes. :class:`EncodeError` (a ``TypeError``) is raised for values
JSON cannot carry (set, Decimal, time, ...) and for circular or too deeply nested structures. Strings
holding lone surrogates (``"\\ud800"``) are accepted and re-encoded as escapes, as ``json`` does.
Years below 1000 are zero-padded to four digits (``0999-01-01``), which DIRAC's decoder also reads.
As in DIRAC, a plain dict that carries a ``__dCls`` key is read as a marker (an empty or null one is
dropped). Passing something other than str/bytes to :func:`decode` is a programming error (TypeError).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import json.encoder
import re
import threading
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Tuple, TypeVar, Union, overload

__all__ = [
    "DecodeError",
    "EncodeError",
    "JSerializable",
    "decode",
    "encode",
    "registerSerializable",
    "strToFloatDict",
    "strToIntDict",
]

DATETIME_DEFAULT_FORMAT = "%Y-%m-%d %H:%M:%S"
DATETIME_DEFAULT_DATE_FORMAT = "%Y-%m-%d"


class DecodeError(ValueError):
    """Input that is not valid JEncode (malformed, too deep, too large, or a refused class marker)."""


class EncodeError(TypeError):
    """A value that JEncode cannot represent (unsupported type, circular or too deeply nested)."""


_registry: Dict[Tuple[str, str], type] = {}
_registryLock = threading.Lock()

C = TypeVar("C", bound=type)


class JSerializable:
    """Base of objects sent as ``{"__dCls", "__dMod", attrs...}``; subclasses are decodable by default."""

    _attrToSerialize: ClassVar[Sequence[str]] = ()

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Put every subclass in the decoding allow-list unless it opts out with ``register=False``."""
        super().__init_subclass__(**kwargs)
        if register:
            with _registryLock:
                _registry[(cls.__module__, cls.__name__)] = cls

    def _toJSON(self) -> Dict[str, Any]:
        """Return the marker dict: class and module names, then every listed attribute that is not None."""
        data: Dict[str, Any] = {"__dCls": type(self).__name__, "__dMod": self.__module__}
        for attrName in self._attrToSerialize:
            value = getattr(self, attrName, None)
            if value is not None:
                data[attrName] = value
        return data


@overload
def registerSerializable(cls: C, *, module: Optional[str] = None, name: Optional[str] = None) -> C: ...


@overload
def registerSerializable(
    cls: None = None, *, module: Optional[str] = None, name: Optional[str] = None
) -> Callable[[C], C]: ...


def registerSerializable(
    cls: Optional[type] = None, *, module: Optional[str] = None, name: Optional[str] = None
) -> Any:
    """Allow decoding ``cls`` from markers naming ``(module, name)`` (default: its own); usable as decorator."""

    def register(klass: C) -> C:
        if not (isinstance(klass, type) and issubclass(klass, JSerializable)):
            raise TypeError(f"registerSerializable: {klass!r} must be a subclass of JSerializable")
        with _registryLock:
            _registry[(module or klass.__module__, name or klass.__name__)] = klass
        return klass

    if cls is None:
        return register
    return register(cls)


#: ``isoformat(" ")`` of naive whole-second datetimes already encoded (the same timestamps recur: a service's
#: start time, the current second); bounded, emptied when full. Plain dict operations: safe from any thread.
_datetimeTexts: Dict[datetime.datetime, str] = {}
_DATETIME_TEXTS_MAX = 256


def _default(obj: Any) -> Any:
    """Convert the non-JSON types JEncode knows into their marker dicts (called by the C encoder)."""
    if isinstance(obj, datetime.datetime):
        if obj.microsecond or obj.tzinfo is not None or type(obj) is not datetime.datetime:
            obj = datetime.datetime(obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second)
        text = _datetimeTexts.get(obj)
        if text is None:
            text = obj.isoformat(" ")
            if len(_datetimeTexts) >= _DATETIME_TEXTS_MAX:
                _datetimeTexts.clear()
            _datetimeTexts[obj] = text
        return {"__dCls": "dt", "obj": text}
    if isinstance(obj, datetime.date):
        if type(obj) is not datetime.date:
            obj = datetime.date(obj.year, obj.month, obj.day)
        return {"__dCls": "date", "obj": obj.isoformat()}
    if isinstance(obj, JSerializable):
        return obj._toJSON()
    if isinstance(obj, bytes):
        return {"__dCls": "b64", "obj": base64.b64encode(obj).decode("ascii")}
    raise EncodeError(
        f"JEncode cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}: "
        "send JSON types, tuples, bytes, datetime/date or a JSerializable (convert e.g. a set with list())"
    )


_pyEncoder = json.JSONEncoder(default=_default, check_circular=False)


def _makeFastEncoder() -> Optional[Callable[[Any, int], Sequence[str]]]:
    """Build the C encoder once with json.dumps's default settings, if this interpreter has it."""
    maker = getattr(json.encoder, "c_make_encoder", None)
    if maker is None:
        return None
    try:
        fast = maker(None, _default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
        probe = {"a": [1, 2.5, None, True, ("\u00e9",)], "b": {"c": float("inf")}}
        if "".join(fast(probe, 0)) != json.dumps(probe):
            return None
    except Exception:
        return None
    return fast  # type: ignore[no-any-return]


_fastEncoder = _makeFastEncoder()


def encode(inData: Any) -> str:
    """Serialise ``inData`` to a JEncode string (what DIRAC's ``json.dumps(..., cls=DJSONEncoder)`` gives)."""
    try:
        if _fastEncoder is not None:
            return "".join(_fastEncoder(inData, 0))
        return _pyEncoder.encode(inData)
    except EncodeError:
        raise
    except RecursionError:
        raise EncodeError(
            "JEncode cannot encode this value: it is circular or nested too deeply; send a flatter structure"
        ) from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"JEncode cannot encode this value: {exc}") from exc


_WS_RE = re.compile(r"[ \t\n\r]*")


def _parseDatetime(text: Any) -> datetime.datetime:
    """Parse a ``dt`` marker value: the canonical form with fromisoformat, anything else as strptime does."""
    if isinstance(text, str) and len(text) == 19 and text[10] == " " and text[4] == "-":
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed
    return datetime.datetime.strptime(text, DATETIME_DEFAULT_FORMAT)


def _parseDate(text: Any) -> datetime.date:
    """Parse a ``date`` marker value: the canonical form with fromisoformat, anything else as strptime does."""
    if isinstance(text, str) and len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            pass
    return datetime.datetime.strptime(text, DATETIME_DEFAULT_DATE_FORMAT).date()


def _rebuild(marker: Any, data: Dict[str, Any]) -> JSerializable:
    """Instantiate an allow-listed JSerializable from a class marker, refusing anything else."""
    module = data.pop("__dMod", None)
    if not isinstance(marker, str) or not isinstance(module, str):
        raise DecodeError(
            f"JEncode object marker __dCls={marker!r} needs a string __dMod (got {module!r}); "
            "the peer sent a malformed serialised object"
        )
    cls = _registry.get((module, marker))
    if cls is None:
        raise DecodeError(
            f"refusing to decode class {marker!r} of module {module!r}: it is not registered as serialisable "
            "in this process (define it as a JSerializable subclass or call registerSerializable)"
        )
    try:
        obj = cls()
        allowed = cls._attrToSerialize  # type: ignore[attr-defined]
        for attrName, value in data.items():
            if value is not None and attrName in allowed:
                setattr(obj, attrName, value)
    except Exception as exc:
        raise DecodeError(f"cannot rebuild {module}.{marker} from JEncode data: {exc!r}") from exc
    return obj  # type: ignore[no-any-return]


def _objectHook(data: Dict[str, Any]) -> Any:
    """Turn marker objects back into datetime/date/bytes/allow-listed objects; other dicts pass through."""
    if "__dCls" not in data:
        return data
    marker = data.pop("__dCls")
    if not marker:
        return data
    try:
        if marker == "dt":
            return _parseDatetime(data["obj"])
        if marker == "date":
            return _parseDate(data["obj"])
        if marker == "b64":
            return base64.b64decode(data["obj"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise DecodeError(f"invalid JEncode {marker!r} marker {repr(data)[:200]}: {exc!r}") from exc
    return _rebuild(marker, data)


_decoder = json.JSONDecoder(object_hook=_objectHook)
_scanOnce = _decoder.scan_once


def decode(encodedData: Union[str, bytes, bytearray]) -> Tuple[Any, int]:
    """Parse JEncode text (str or UTF-8 bytes) and return ``(object, len(encodedData))`` as DIRAC does."""
    if isinstance(encodedData, str):
        text = encodedData
    elif isinstance(encodedData, (bytes, bytearray)):
        try:
            text = encodedData.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"JEncode input is not valid UTF-8 at byte {exc.start}: {exc.reason}") from None
    else:
        raise TypeError(f"decode() takes str or bytes, not {type(encodedData).__name__}")
    try:
        try:
            obj, end = _scanOnce(text, 0)
        except StopIteration:
            end = -1
        if end != len(text) and (end < 0 or _WS_RE.match(text, end).end() != len(text)):  # type: ignore[union-attr]
            # leading whitespace, trailing data or a syntax error: let the full decoder place it
            obj = _decoder.decode(text)
    except DecodeError:
        raise
    except json.JSONDecodeError as exc:
        raise DecodeError(f"malformed JSON in JEncode input: {exc}") from None
    except RecursionError:
        raise DecodeError(
            "JEncode input is nested too deeply to decode (deeper than the interpreter recursion limit)"
        ) from None
    except ValueError as exc:
        raise DecodeError(f"invalid JEncode input: {exc}") from None
    return obj, len(encodedData)


def strToIntDict(inDict: Dict[Any, Any]) -> Dict[int, Any]:
    """Turn back the int keys JSON made into strings (e.g. job IDs)."""
    return {int(key): value for key, value in inDict.items()}


def strToFloatDict(inDict: Dict[Any, Any]) -> Dict[float, Any]:
    """Turn back the float keys JSON made into strings."""
    return {float(key): value for key, value in inDict.items()}

