"""DIRAC return structures: ``S_OK``/``S_ERROR`` dictionaries and the helpers that convert them.

Every public, fallible DIRAC call returns ``{"OK": True, "Value": ...}`` or
``{"OK": False, "Errno": int, "Message": str, "CallStack": [...]}``; these dictionaries are what
services send back over the wire (without ``CallStack``).
"""

from __future__ import annotations

import functools
import sys
import traceback
from types import TracebackType
from typing import Any, Callable, Dict, Generic, List, Literal, Optional, Tuple, Type, TypeVar, Union, cast, overload

from TornadoServices.Core.DErrno import strerror

T = TypeVar("T")

if sys.version_info >= (3, 11):
    from typing import NotRequired, ParamSpec, TypedDict

    class DOKReturnType(TypedDict, Generic[T]):
        """Typing of an ``S_OK`` structure."""

        OK: Literal[True]
        Value: T

    class DErrorReturnType(TypedDict):
        """Typing of an ``S_ERROR`` structure."""

        OK: Literal[False]
        Message: str
        Errno: int
        ExecInfo: NotRequired[Tuple[Type[BaseException], BaseException, TracebackType]]
        CallStack: NotRequired[List[str]]

    DReturnType = Union[DOKReturnType[T], DErrorReturnType]
else:  # Python 3.10: no generic TypedDict; keep the aliases subscriptable for annotations
    from typing import ParamSpec

    DOKReturnType = Dict[str, T]  # type: ignore[misc]
    DErrorReturnType = Dict[str, Any]  # type: ignore[misc]
    DReturnType = Union[Dict[str, T], Dict[str, Any]]  # type: ignore[misc]

P = ParamSpec("P")


def S_ERROR(*args: Any, callStack: Optional[List[str]] = None) -> DErrorReturnType:
    """Build an error structure from ``"msg"``, ``errno`` or ``errno, "msg"`` (message prefixed by strerror)."""
    errno = 0
    message: Any = ""
    if args:
        if isinstance(args[0], int):
            errno = args[0]
            if len(args) > 1:
                message = args[1]
        else:
            message = args[0]
    if errno:
        message = f"{strerror(errno)} ( {errno} : {message})"
    if callStack is None:
        try:
            callStack = traceback.format_stack()
            callStack.pop()
        except Exception:
            callStack = []
    return cast(DErrorReturnType, {"OK": False, "Errno": errno, "Message": message, "CallStack": callStack})


@overload
def S_OK() -> DOKReturnType[None]: ...


@overload
def S_OK(value: T) -> DOKReturnType[T]: ...


def S_OK(value: Any = None) -> Any:
    """Build a success structure carrying ``value``."""
    return {"OK": True, "Value": value}


def isReturnStructure(unk: Any) -> bool:
    """Tell whether ``unk`` is a well-formed ``S_OK``/``S_ERROR`` dictionary."""
    if not isinstance(unk, dict) or "OK" not in unk:
        return False
    return "Value" in unk if unk["OK"] else "Message" in unk


def isSError(value: Any) -> bool:
    """Tell whether ``value`` looks like an ``S_ERROR`` (a dict with ``OK`` and ``Message``)."""
    return isinstance(value, dict) and "OK" in value and "Message" in value


def reprReturnErrorStructure(struct: Dict[str, Any], full: bool = False) -> str:
    """Render an error structure as S_ERROR formats it, optionally followed by its call stack."""
    errorNumber = struct.get("Errno", 0)
    message = struct.get("Message", "")
    text = f"{strerror(errorNumber)} ( {errorNumber} : {message})" if errorNumber else message
    if full:
        callStack = struct.get("CallStack")
        if callStack:
            text += "\n" + "".join(callStack)
    return text


def returnSingleResult(dictRes: DReturnType[Any]) -> DReturnType[Any]:
    """Reduce a bulk ``S_OK({"Successful": {}, "Failed": {}})`` to the single result it holds."""
    if not dictRes["OK"]:
        return dictRes
    value = cast(Dict[str, Any], dictRes["Value"])
    failed = value.get("Failed") if "Failed" in value else None
    if failed:
        errorMessage = next(iter(failed.values()))
        if isinstance(errorMessage, dict):
            if isReturnStructure(errorMessage):
                return cast(DErrorReturnType, errorMessage)
            return S_ERROR(str(errorMessage))
        return S_ERROR(errorMessage)
    successful = value.get("Successful") if "Successful" in value else None
    if successful:
        return S_OK(next(iter(successful.values())))
    return S_ERROR("returnSingleResult: Failed and Successful dictionaries are empty")


class SErrorException(Exception):
    """Exception carrying an ``S_ERROR`` in ``.result``, turned back into it by ``convertToReturnValue``."""

    def __init__(self, result: Union[DErrorReturnType, str], errCode: int = 0) -> None:
        """Wrap an existing S_ERROR, or build ``S_ERROR(errCode, message)`` from a string."""
        if not isSError(result):
            result = S_ERROR(errCode, result) if errCode else S_ERROR(result)
        self.result: DErrorReturnType = cast(DErrorReturnType, result)
        super().__init__(self.result["Message"])


def returnValueOrRaise(result: DReturnType[T], *, errorCode: int = 0) -> T:
    """Return ``result["Value"]``, or raise the original exception (``ExecInfo``) or an SErrorException."""
    if not result["OK"]:
        execInfo = result.get("ExecInfo")  # type: ignore[union-attr]
        if execInfo:
            raise execInfo[1] if execInfo[1] is not None else execInfo[0]
        raise SErrorException(cast(DErrorReturnType, result), errorCode)
    return cast(T, result["Value"])  # type: ignore[typeddict-item]


def convertToReturnValue(func: Callable[P, T]) -> Callable[P, DReturnType[T]]:
    """Decorate ``func`` so that it returns S_OK(value), or S_ERROR for any exception it raises."""

    @functools.wraps(func)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> DReturnType[T]:
        try:
            value = func(*args, **kwargs)
        except SErrorException as exc:
            return exc.result
        except Exception as exc:
            error = S_ERROR(repr(exc))
            excType, excValue, excTb = sys.exc_info()
            if excType is not None and excValue is not None and excTb is not None:
                error["ExecInfo"] = (excType, excValue, excTb)
                error["CallStack"] = traceback.format_tb(excTb)
            return error
        return S_OK(value)

    wrapped.__annotations__ = {**getattr(func, "__annotations__", {}), "return": DReturnType}
    return wrapped
