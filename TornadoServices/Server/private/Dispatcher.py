"""The RPC method table of a service and the checks made before a call, independent of Tornado and sockets.

A handler class is scanned once at start-up: every ``export_<name>`` becomes a :class:`MethodInfo` holding
the function, whether it is a coroutine, its ``types_<name>`` list, the accepted argument counts and the
class's ``finish_<name>`` (never callable by itself: only ``export_`` names are in the table). Per
request, the service only looks the name up in that dictionary and runs the cheap checks below.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional

from TornadoServices.Core.Encoding import EncodeError
from TornadoServices.Core.ReturnValues import isReturnStructure

__all__ = [
    "MethodInfo",
    "buildMethodTable",
    "checkExpectedArgumentTypes",
    "checkArgumentCount",
    "stripCallStacks",
    "isRawContentRequested",
]

EXPORT_PREFIX = "export_"
FINISH_PREFIX = "finish_"
_STRIPPED_KEYS = ("CallStack", "ExecInfo")
_FALSE_WORDS = frozenset(("false", "0", "no", "none", "off"))


class MethodInfo:
    """What the dispatcher knows about one exported method (built once per handler class)."""

    __slots__ = ("name", "function", "isCoroutine", "inline", "typesList", "minArgs", "maxArgs", "hasTypes", "stripResult", "finisher")

    def __init__(self, name: str, function: Callable[..., Any], typesList: Any, finisher: Optional[Callable[..., Any]] = None) -> None:
        self.name = name
        self.function = function
        self.isCoroutine = inspect.iscoroutinefunction(function)
        #: a plain function declared @nonBlocking: called on the event loop, without the worker-thread hop
        self.inline = not self.isCoroutine and bool(getattr(function, "nonBlocking", False))
        self.hasTypes = typesList is not None
        self.typesList = tuple(typesList) if typesList is not None else ()
        self.minArgs, self.maxArgs = _argumentCounts(function)
        #: False for built-ins that build their result themselves (nothing to clean: CallStack stripping skipped)
        self.stripResult = not getattr(function, "serverBuiltResult", False)
        #: the class's ``finish_<name>``: called on the event loop after the method, instead of the default answer
        self.finisher = finisher

    def __repr__(self) -> str:
        kind = "async" if self.isCoroutine else "inline" if self.inline else "sync"
        finisher = " finish_" if self.finisher is not None else ""
        return f"<MethodInfo {self.name} {kind} args={self.minArgs}..{self.maxArgs}{finisher}>"


def _argumentCounts(function: Callable[..., Any]) -> tuple[int, int | None]:
    """Minimum and maximum number of positional arguments after ``self`` (``None`` = unlimited)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 0, None
    params = list(signature.parameters.values())[1:]  # drop self
    minimum = 0
    maximum: int | None = 0
    for param in params:
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            maximum = None if maximum is None else maximum + 1
            if param.default is param.empty:
                minimum += 1
        elif param.kind is param.VAR_POSITIONAL:
            maximum = None
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            # a required keyword-only argument can never be given over the wire
            return minimum, -1
    return minimum, maximum


def buildMethodTable(handlerClass: type) -> dict[str, MethodInfo]:
    """Every callable ``export_<name>`` of ``handlerClass`` (inherited ones included), keyed by ``<name>``."""
    table: dict[str, MethodInfo] = {}
    for attrName in dir(handlerClass):
        if not attrName.startswith(EXPORT_PREFIX):
            continue
        function = getattr(handlerClass, attrName, None)
        if not callable(function):
            continue
        name = attrName[len(EXPORT_PREFIX) :]
        if not name:
            continue
        finisher = getattr(handlerClass, f"{FINISH_PREFIX}{name}", None)
        table[name] = MethodInfo(
            name, function, getattr(handlerClass, f"types_{name}", None), finisher if callable(finisher) else None
        )
    return table


def _typeName(expected: Any) -> str:
    """DISET prints the expected type(s) with ``str()``: ``<class 'int'>`` or a tuple/list of them."""
    return str(expected)


def checkExpectedArgumentTypes(method: str, typesList: Iterable[Any], args: list[Any]) -> str | None:
    """DISET's ``types_`` check: ``None`` when the arguments match, else DISET's error message.

    Each entry is a type, a tuple/list of types, or ``None`` (not checked); pairs are compared up to the
    shorter list, then fewer arguments than types is an error.
    """
    types = list(typesList)
    for index in range(min(len(types), len(args))):
        expected = types[index]
        if expected is None:
            continue
        accepted = tuple(expected) if isinstance(expected, (list, tuple)) else expected
        try:
            matches = isinstance(args[index], accepted)
        except TypeError:
            return f"Handler error: types_{method}[{index}] is not a type or a list of types ({expected!r})"
        if not matches:
            return (
                f"Type mismatch in parameter {index} (starting with param 0) "
                f"Received {type(args[index])}, expected {_typeName(expected)}"
            )
    if len(args) < len(types):
        return f"Function {method} expects at least {len(types)} arguments"
    return None


def checkArgumentCount(info: MethodInfo, count: int) -> str | None:
    """``None`` when ``count`` positional arguments fit the method's signature, else a message for the caller."""
    if info.maxArgs == -1:
        return f"Method {info.name} has a required keyword-only argument and cannot be called remotely"
    if count < info.minArgs or (info.maxArgs is not None and count > info.maxArgs):
        if info.maxArgs is None:
            expected = f"at least {info.minArgs}"
        elif info.minArgs == info.maxArgs:
            expected = str(info.minArgs)
        else:
            expected = f"{info.minArgs} to {info.maxArgs}"
        return f"Method {info.name} takes {expected} argument(s), {count} given"
    return None


def stripCallStacks(result: Any) -> Any:
    """``result`` without ``CallStack``/``ExecInfo`` in any return structure it contains, top level included.

    The original objects are never modified: containers are copied only along the paths that change, so a
    handler may return its own cached state safely. A structure nested deeper than the interpreter can walk
    raises :class:`EncodeError`, as encoding it would (it could not be sent anyway).
    """
    try:
        return _strip(result)
    except RecursionError:
        raise EncodeError(
            "JEncode cannot encode this value: it is nested too deeply; send a flatter structure"
        ) from None


def _strip(result: Any) -> Any:
    if type(result) is dict:
        return _stripDict(result)
    if isinstance(result, (list, tuple)):
        return _stripSequence(result)
    return result


def _stripDict(data: dict) -> dict:
    changed = False
    out: dict | None = None
    if "OK" in data and isReturnStructure(data) and ("CallStack" in data or "ExecInfo" in data):
        out = {k: v for k, v in data.items() if k not in _STRIPPED_KEYS}
        changed = True
    source = out if out is not None else data
    for key, value in source.items():
        if isinstance(value, (dict, list, tuple)):
            newValue = _strip(value)
            if newValue is not value:
                if not changed:
                    out = dict(source)
                    changed = True
                out[key] = newValue  # type: ignore[index]
    return out if changed else data  # type: ignore[return-value]


def _stripSequence(data: list | tuple) -> list | tuple:
    out: list | None = None
    for index, value in enumerate(data):
        if isinstance(value, (dict, list, tuple)):
            newValue = _strip(value)
            if newValue is not value:
                if out is None:
                    out = list(data)
                out[index] = newValue
    if out is None:
        return data
    return tuple(out) if isinstance(data, tuple) else out


def isRawContentRequested(value: str | None) -> bool:
    """``rawContent`` form field: present, non-empty and not a false word (``False``/``0``/``no``...)."""
    if not value:
        return False
    return value.strip().lower() not in _FALSE_WORDS
