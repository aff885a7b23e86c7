"""``ThreadConfig``: the identity a thread (or asyncio task) acts for, used by every client it calls.

DIRAC code acting on behalf of a user (agents, executors, a service calling another service) sets it
once and every client call made afterwards in that thread delegates::

    from TornadoServices.Core.DISET.ThreadConfig import ThreadConfig

    ThreadConfig().setDN(userDN)          # the group defaults to the user's default group (Registry)
    ThreadConfig().setGroup("dirac_user")
    TornadoClient("Framework/Dummy").whoami()   # sends extraCredentials = [userDN, "dirac_user"]
    ThreadConfig().reset()

As in DIRAC, ``ThreadConfig()`` always returns the same object and its values are private to the caller.
The values live in a :class:`contextvars.ContextVar`: each thread starts with none (what DIRAC's
``threading.local`` gives), and each asyncio task sees the values of the task that created it, so
two coroutines on one event loop acting for different users do not mix either. Delegation is only a
request: the server honours it for hosts with the ``TrustedHost`` property and refuses it otherwise.
"""
from __future__ import annotations

import contextvars
from typing import Any, NamedTuple, Optional, Union

__all__ = ["ThreadConfig"]

#: what DIRAC returns for a value that was not set
_UNSET: Any = False


class _Identity(NamedTuple):
    DN: Any = _UNSET
    group: Any = _UNSET
    setup: Any = _UNSET


_EMPTY = _Identity()
_identity: contextvars.ContextVar[_Identity] = contextvars.ContextVar("TornadoServicesThreadConfig", default=_EMPTY)


class ThreadConfig:
    """DN, group and setup the current thread (or asyncio task) acts for; ``False`` when not set."""

    _instance: Optional["ThreadConfig"] = None

    def __new__(cls) -> "ThreadConfig":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @staticmethod
    def _get() -> _Identity:
        return _identity.get()

    @staticmethod
    def _set(**changes: Any) -> None:
        _identity.set(_identity.get()._replace(**changes))

    def reset(self) -> None:
        """Forget DN, group and setup of the caller: its client calls no longer delegate."""
        _identity.set(_EMPTY)

    def setDN(self, DN: str) -> None:
        """Act for the user with certificate subject ``DN``."""
        self._set(DN=DN)

    def getDN(self) -> Union[str, bool]:
        """Return the DN acted for, False when none."""
        return self._get().DN

    def setGroup(self, group: str) -> None:
        """Act in DIRAC group ``group`` (without one, the DN's default group is used)."""
        self._set(group=group)

    def getGroup(self) -> Union[str, bool]:
        """Return the group acted in, False when none."""
        return self._get().group

    def setID(self, DN: str, group: str) -> None:
        """Set DN and group at once."""
        self._set(DN=DN, group=group)

    def getID(self) -> tuple[Any, Any]:
        """Return ``(DN, group)`` (each False when not set)."""
        current = self._get()
        return (current.DN, current.group)

    def setSetup(self, setup: str) -> None:
        """Name the setup the caller's clients send (``clientSetup``)."""
        self._set(setup=setup)

    def getSetup(self) -> Union[str, bool]:
        """Return the setup, False when none."""
        return self._get().setup

    def dump(self) -> tuple[Any, Any, Any]:
        """Return ``(DN, group, setup)``, to hand the identity to another thread (see :meth:`load`)."""
        return tuple(self._get())  # type: ignore[return-value]

    def load(self, tp: tuple[Any, Any, Any]) -> None:
        """Take DN, group and setup from a :meth:`dump`; values that are empty there are left as they are."""
        dn, group, setup = tp
        current = self._get()
        _identity.set(_Identity(dn or current.DN, group or current.group, setup or current.setup))

    def __repr__(self) -> str:
        dn, group, setup = self._get()
        return f"<ThreadConfig DN={dn!r} group={group!r} setup={setup!r}>"
