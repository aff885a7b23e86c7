"""DIRAC error numbers: the table of DIRAC-specific codes, their descriptions, and comparison helpers.

Codes below 1000 are the operating system's ``errno`` values; DIRAC's own codes start at 1000 and are
grouped by hundreds (1000 generic, 1100 core/security, 1400 configuration, ...), with the same numbers
and texts as DIRAC so that ``Errno`` values and messages agree on the wire.

Extensions add codes with :func:`registerErrors` (or :func:`includeExtensionErrors` for a module laid
out like DIRAC's extension ``DErrno`` files); the names become attributes of this module.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

# Generic (10XX): Python related 100X, files 101X
ETYPE = 1000
EIMPERR = 1001
ENOMETH = 1002
ECONF = 1003
EVALUE = 1004
EEEXCEPTION = 1005
ECTMPF = 1010
EOF = 1011
ERF = 1012
EWF = 1013
ESPF = 1014

# Core (11XX): certificates and proxies 110X, DISET 111X, 3rd party security 112X, databases 113X,
# message queues 114X, tokens 115X
EX509 = 1100
EPROXYFIND = 1101
EPROXYREAD = 1102
ECERTFIND = 1103
ECERTREAD = 1104
ENOCERT = 1105
ENOCHAIN = 1106
ENOPKEY = 1107
ENOGROUP = 1108
EDISET = 1110
ENOAUTH = 1111
E3RDPARTY = 1120
EVOMS = 1121
EDB = 1130
EMYSQL = 1131
ESQLA = 1132
EMQUKN = 1140
EMQNOM = 1141
EMQCONN = 1142
EELNOFOUND = 1146
EEZOMBIE = 1147
EENOPID = 1148
EATOKENFIND = 1150
EATOKENREAD = 1151
ETOKENTYPE = 1152

# Configuration (14XX)
ESECTION = 1400

# Code -> constant name.
dErrorCode: dict[int, str] = {
    ETYPE: "ETYPE",
    EIMPERR: "EIMPERR",
    ENOMETH: "ENOMETH",
    ECONF: "ECONF",
    EVALUE: "EVALUE",
    EEEXCEPTION: "EEEXCEPTION",
    ECTMPF: "ECTMPF",
    EOF: "EOF",
    ERF: "ERF",
    EWF: "EWF",
    ESPF: "ESPF",
    EX509: "EX509",
    EPROXYFIND: "EPROXYFIND",
    EPROXYREAD: "EPROXYREAD",
    ECERTFIND: "ECERTFIND",
    ECERTREAD: "ECERTREAD",
    ENOCERT: "ENOCERT",
    ENOCHAIN: "ENOCHAIN",
    ENOPKEY: "ENOPKEY",
    ENOGROUP: "ENOGROUP",
    EDISET: "EDISET",
    ENOAUTH: "ENOAUTH",
    E3RDPARTY: "E3RDPARTY",
    EVOMS: "EVOMS",
    EDB: "EDB",
    EMYSQL: "EMYSQL",
    ESQLA: "ESQLA",
    EMQUKN: "EMQUKN",
    EMQNOM: "EMQNOM",
    EMQCONN: "EMQCONN",
    EELNOFOUND: "EELNOFOUND",
    EEZOMBIE: "EEZOMBIE",
    EENOPID: "EENOPID",
    EATOKENFIND: "EATOKENFIND",
    EATOKENREAD: "EATOKENREAD",
    ETOKENTYPE: "ETOKENTYPE",
    ESECTION: "ESECTION",
}

# Code -> human readable description (the text S_ERROR puts in front of the message).
dStrError: dict[int, str] = {
    ETYPE: "Object Type Error",
    EIMPERR: "Failed to import library",
    ENOMETH: "No such method or function",
    ECONF: "Configuration error",
    EVALUE: "Wrong value passed",
    EEEXCEPTION: "runtime general exception",
    ECTMPF: "Failed to create temporary file",
    EOF: "Cannot open file",
    ERF: "Cannot read from file",
    EWF: "Cannot write to file",
    ESPF: "Cannot set permissions to file",
    EX509: "Generic Error with X509",
    EPROXYFIND: "Can't find proxy",
    EPROXYREAD: "Can't read proxy",
    ECERTFIND: "Can't find certificate",
    ECERTREAD: "Can't read certificate",
    ENOCERT: "No certificate loaded",
    ENOCHAIN: "No chain loaded",
    ENOPKEY: "No private key loaded",
    ENOGROUP: "No DIRAC group",
    EDISET: "DISET Error",
    ENOAUTH: "Unauthorized query",
    E3RDPARTY: "3rd party security service error",
    EVOMS: "VOMS Error",
    EDB: "Database Error",
    EMYSQL: "MySQL Error",
    ESQLA: "SQLAlchemy Error",
    EMQUKN: "Unknown MQ Error",
    EMQNOM: "No messages",
    EMQCONN: "MQ connection failure",
    EELNOFOUND: "Index not found",
    EEZOMBIE: "Zombie process",
    EENOPID: "No PID of process",
    EATOKENFIND: "Can't find a bearer access token.",
    EATOKENREAD: "Can't read a bearer access token.",
    ETOKENTYPE: "Unsupported access token type.",
    ESECTION: "Section is not found",
}

# Code -> extra message fragments that also identify the error in old-style string errors.
compatErrorString: dict[int, list[str]] = {}

_registryLock = threading.Lock()


def strerror(code: int) -> str:
    """Describe an error code: DIRAC's table first, then the operating system's, as DIRAC does."""
    if code == 0:
        return "Undefined error"
    try:
        return dStrError[code]
    except (KeyError, TypeError):
        pass
    try:
        return os.strerror(code)
    except (ValueError, OverflowError, TypeError):
        return f"Unknown error {code}"


def cmpError(inErr: Any, candidate: int) -> bool:
    """Tell whether an error (S_ERROR dict, message string or code) is the error ``candidate``."""
    if isinstance(inErr, dict):
        errorNumber = inErr.get("Errno")
        if errorNumber:
            return errorNumber == candidate
        return _messageMatches(str(inErr.get("Message", "")), candidate)
    if isinstance(inErr, bool):
        raise TypeError(f"cmpError: cannot compare a bool with error {candidate}; pass an S_ERROR, message or code")
    if isinstance(inErr, int):
        return inErr == candidate
    if isinstance(inErr, str):
        return _messageMatches(inErr, candidate)
    raise TypeError(
        f"cmpError: unsupported error type {type(inErr).__name__}; pass an S_ERROR dict, a message or a code"
    )


def _messageMatches(message: str, candidate: int) -> bool:
    """Match an old-style error message against the description (or compatible strings) of a code."""
    if strerror(candidate) in message:
        return True
    return any(fragment in message for fragment in compatErrorString.get(candidate, ()))


def registerErrors(
    errors: Mapping[str, Union[int, Tuple[int, str]]],
    descriptions: Optional[Mapping[int, str]] = None,
    compatStrings: Optional[Mapping[int, Iterable[str]]] = None,
) -> None:
    """Add extension error codes and expose their names here.

    ``errors`` maps a name to ``(code, description)``, or to a bare code described in ``descriptions``;
    ``compatStrings`` adds old message fragments that :func:`cmpError` also recognises.
    """
    newNames: Dict[str, int] = {}
    newTexts: Dict[int, str] = dict(descriptions or {})
    for name, definition in errors.items():
        code = definition[0] if isinstance(definition, tuple) else definition
        if isinstance(definition, tuple):
            newTexts[code] = definition[1]
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(code, int) or isinstance(code, bool):
            raise ValueError(f"registerErrors: invalid error definition {name!r} = {definition!r}")
        newNames[name] = code
    with _registryLock:
        for name, code in newNames.items():
            known = dErrorCode.get(code)
            if known is not None and known != name:
                raise ValueError(f"registerErrors: code {code} is already {known}, cannot also be {name}")
            if code not in newTexts and code not in dStrError:
                raise ValueError(f"registerErrors: error {name} ({code}) has no description")
        module = sys.modules[__name__]
        for name, code in newNames.items():
            dErrorCode[code] = name
            setattr(module, name, code)
        dStrError.update(newTexts)
        for code, fragments in (compatStrings or {}).items():
            compatErrorString.setdefault(code, []).extend(fragments)


def includeExtensionErrors(extensions: Iterable[str] = ()) -> None:
    """Merge the ``<extension>.Core.DErrno`` tables (``extra_dErrName``, ``extra_dStrError``, ...)."""
    for extension in extensions:
        moduleName = f"{extension}.Core.DErrno"
        try:
            extModule = importlib.import_module(moduleName)
        except ModuleNotFoundError as exc:
            if exc.name is not None and moduleName.startswith(exc.name):
                continue
            raise
        registerErrors(
            getattr(extModule, "extra_dErrName", {}),
            getattr(extModule, "extra_dStrError", {}),
            getattr(extModule, "extra_compatErrorString", None),
        )
