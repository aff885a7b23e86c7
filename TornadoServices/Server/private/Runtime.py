"""Per-component state shared by every request of one service (built once at server start)."""
from __future__ import annotations

import datetime
import time
from typing import Any

from TornadoServices.Server.AuthManager import AuthManager
from TornadoServices.Server.private.AccessLog import AccessRecordFactory
from TornadoServices.Server.private.Dispatcher import MethodInfo
from TornadoServices.Server.private.ServiceExecutor import ServiceExecutor
from TornadoServices.Server.private.Settings import ServerSettings
from TornadoServices.Server.private.Stats import ServerStats

__all__ = ["ComponentRuntime"]


class ComponentRuntime:
    """What a service's requests need: method table, rules, worker pool, limits, logger and counters."""

    #: True once the server drains before stopping: new calls are refused with 503
    draining = False

    def __init__(
        self,
        name: str,
        sectionPath: str,
        url: str,
        methods: dict[str, MethodInfo],
        hardcodedRules: dict[str, Any],
        defaultAuthorization: Any,
        authManager: AuthManager,
        executor: ServiceExecutor,
        settings: ServerSettings,
        stats: ServerStats,
        log: Any,
        uploadMethods: frozenset[str],
        hasInitializeRequest: bool,
        bodyDeadlines: Any,
        trustedProxies: Any,
    ) -> None:
        self.name = name
        self.sectionPath = sectionPath
        self.url = url
        self.methods = methods
        self.hardcodedRules = hardcodedRules
        self.defaultAuthorization = defaultAuthorization
        self.authManager = authManager
        self.executor = executor
        self.settings = settings
        self.stats = stats
        self.log = log
        self.pyLogger = log.logger
        #: records of the per-request access line (see AccessLog)
        self.accessRecords = AccessRecordFactory(log.logger)
        self.uploadMethods = uploadMethods
        self.hasInitializeRequest = hasInitializeRequest
        #: server-wide BodyDeadlines (slow bodies are cut by one periodic sweep)
        self.bodyDeadlines = bodyDeadlines
        #: TrustedProxies of the server: credentials of a request, forwarded by a TLS-terminating front end or not
        self.trustedProxies = trustedProxies
        self.startTime = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
        self.startTimestamp = time.time()
