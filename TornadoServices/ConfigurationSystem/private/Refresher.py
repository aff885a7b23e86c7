"""Background refresher: keeps this process's remote configuration up to date with the CS service.

Every process that reads ``gConfig`` (servers, clients, scripts) runs one daemon thread that, every
``/DIRAC/Configuration/RefreshTime`` seconds, asks one of ``/DIRAC/Configuration/Servers`` (random
order, first success wins) for ``getCompressedDataIfNewer(<my version>)`` and installs newer data with
``gConfig.loadRemoteCFG``. That bumps the configuration generation, so every cache keyed on it
(authorisation rules, Registry, URLs) follows without a restart. Requests never wait for it: they read
the configuration snapshot that is current when they run.

A slave Configuration server switches the refresher to *slave mode*
(``autoRefreshAndPublish(ownURL)``): every ``PropagationTime`` seconds it pulls from
``/DIRAC/Configuration/MasterServer`` and then publishes its own URL to the master (unless its local
``/DIRAC/Configuration/AutoPublish = no``). When every server is unreachable the last good configuration
stays in place.
"""
from __future__ import annotations

import os
import random
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from typing import Any

from TornadoServices.ConfigurationSystem.Client.ConfigurationData import (
    CFGSyntaxError,
    ConfigurationData,
    gConfigurationData,
    loadCFGFromText,
)
from TornadoServices.Core.Logging import gLogger
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK

__all__ = ["Refresher", "gRefresher"]

sLog = gLogger.getSubLogger("Refresher")

_TRUE = ("y", "yes", "true", "1")

#: Seconds one configuration server may take to answer a refresh before the next one is tried.
REFRESH_TIMEOUT = 20


def _defaultClientFactory(url: str, **kwargs: Any) -> Any:
    """Build the RPC client used to reach a configuration server."""
    from TornadoServices.ConfigurationSystem.Client.ConfigurationClient import ConfigurationClient

    return ConfigurationClient(url=url, **kwargs)


def _decompress(data: Any) -> str:
    """Return the CFG text of compressed configuration data (bytes, or base64 text from a raw client)."""
    import zlib

    if isinstance(data, str):
        data = b64decode(data)
    return zlib.decompress(data).decode()


class Refresher:
    """One background thread refreshing a ConfigurationData from the configuration servers."""

    def __init__(
        self,
        configurationData: ConfigurationData = gConfigurationData,
        clientFactory: Callable[..., Any] = _defaultClientFactory,
    ) -> None:
        self._data = configurationData
        self._clientFactory = clientFactory
        self._enabled = os.environ.get("DIRAC_DISABLE_GCONFIG_REFRESH", "").lower() not in _TRUE
        self._lock = threading.Lock()  # protects the fields below
        self._refreshLock = threading.Lock()  # one refresh at a time
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._slaveURL: str | None = None
        self.lastRefreshTime = 0.0
        self.lastRefreshResult: dict | None = None
        self.lastPublishResult: dict | None = None
        self._failing = False
        self._publishFailing = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._afterFork)

    # ---- state ----------------------------------------------------------------------------------

    def isEnabled(self) -> bool:
        """True unless disabled (master CS, DIRAC_DISABLE_GCONFIG_REFRESH=yes, tests)."""
        return self._enabled

    def enable(self) -> None:
        """Allow refreshes again."""
        self._enabled = True

    def disable(self) -> None:
        """Stop refreshing (the master CS owns its configuration); the thread idles."""
        self._enabled = False

    def isRunning(self) -> bool:
        """True when the background thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def isSlave(self) -> bool:
        """True once autoRefreshAndPublish switched this refresher to slave mode."""
        return self._slaveURL is not None

    def _period(self) -> float:
        """Seconds between two automatic refreshes (PropagationTime for slaves, RefreshTime otherwise)."""
        seconds = self._data.getPropagationTime() if self._slaveURL else self._data.getRefreshTime()
        return max(0.5, float(seconds))

    def _useCertificates(self) -> bool:
        if self._slaveURL:
            return True
        value = self._data.getSnapshot().lookup("/DIRAC/Security/UseServerCertificate")
        return isinstance(value, str) and value.lower() in _TRUE

    # ---- life cycle -----------------------------------------------------------------------------

    def start(self, initialSync: bool = True) -> dict:
        """Start the background thread (idempotent); first refresh synchronously when ``initialSync``.

        Returns the result of the initial refresh (S_OK when it was skipped); a failure is not fatal: the
        process goes on with its local configuration and the thread retries.
        """
        if not self._enabled:
            return S_OK("configuration refresh disabled")
        if self._data.isMaster():
            self.disable()
            return S_OK("master configuration server: no refresh")
        result = S_OK()
        if initialSync and not self.isRunning():
            result = self.forceRefresh()
            if not result["OK"]:
                sLog.warn(
                    "Initial configuration refresh failed, going on with the local configuration", result["Message"]
                )
        self._startThread()
        return result

    def _startThread(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="CS-Refresher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread (tests)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._thread = None

    def reset(self) -> None:
        """Stop and forget slave mode and history (tests)."""
        self.stop()
        self._slaveURL = None
        self._enabled = os.environ.get("DIRAC_DISABLE_GCONFIG_REFRESH", "").lower() not in _TRUE
        self.lastRefreshTime = 0.0
        self.lastRefreshResult = None
        self.lastPublishResult = None

    def _afterFork(self) -> None:
        """In a forked worker the thread is gone: start a fresh one if the parent had one."""
        hadThread = self._thread is not None
        self._lock = threading.Lock()
        self._refreshLock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        if hadThread and self._enabled:
            self._startThread()

    def autoRefreshAndPublish(self, slaveURL: str) -> None:
        """Slave mode: pull from the master every PropagationTime and publish ``slaveURL`` to it."""
        sLog.info("Slave configuration server mode", f"own URL {slaveURL}")
        self._slaveURL = slaveURL
        self._enabled = True
        self._startThread()
        self._wake.set()

    def refreshConfigurationIfNeeded(self) -> None:
        """Wake the thread when the last refresh is older than the refresh period (never blocks)."""
        if self._enabled and time.time() - self.lastRefreshTime > self._period():
            self._wake.set()

    # ---- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            elapsed = time.time() - self.lastRefreshTime
            delay = max(0.0, self._period() - elapsed)
            if delay:
                self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._enabled:
                self.lastRefreshTime = time.time()
                continue
            try:
                self._cycle()
            except Exception as exc:  # the thread must survive anything
                sLog.exception("Configuration refresh failed", lException=exc)
                self.lastRefreshTime = time.time()

    def _cycle(self) -> None:
        """One automatic round: refresh (from the master for slaves), then publish when a slave."""
        if self._slaveURL:
            result = self.forceRefresh(fromMaster=True)
            self._report(result, "Cannot update from the master, serving the last good configuration")
            if self._data.getAutoPublish():
                self.lastPublishResult = self._publish()
        else:
            result = self.forceRefresh()
            self._report(result, "Configuration refresh failed, keeping the current configuration")

    def _report(self, result: dict, problem: str) -> None:
        """Log a failing refresh loudly once, then quietly until it works again (no log flood every period)."""
        if result["OK"]:
            if self._failing:
                sLog.notice("Configuration refresh works again", f"version {result['Value']}")
            self._failing = False
        elif not self._failing:
            self._failing = True
            sLog.warn(problem, result["Message"])
        else:
            sLog.verbose(problem, result["Message"])

    def _publish(self) -> dict:
        """Tell the master this slave is alive."""
        master = self._data.getMasterServer()
        if not master:
            return S_ERROR("Cannot publish: /DIRAC/Configuration/MasterServer is not set")
        if master == self._slaveURL:
            return S_ERROR("Cannot publish: this server's URL is the MasterServer URL")
        try:
            client = self._clientFactory(master, useCertificates=True, timeout=REFRESH_TIMEOUT)
            result = client.publishSlaveServer(self._slaveURL)
        except Exception as exc:  # network or client failures are reported, not raised
            result = S_ERROR(f"{master}: {exc}")
        if not result["OK"]:
            logMethod = sLog.verbose if self._publishFailing else sLog.warn
            logMethod("Cannot publish this slave to the master", f"{master}: {result['Message']}")
        else:
            sLog.debug("Published to the master", master)
        self._publishFailing = not result["OK"]
        return result

    # ---- one refresh ----------------------------------------------------------------------------

    def _sources(self, fromMaster: bool) -> list[str]:
        if fromMaster:
            master = self._data.getMasterServer()
            if master and master != self._slaveURL:
                return [master]
        servers = [url for url in self._data.getServers() if url and url != self._slaveURL]
        random.shuffle(servers)
        return servers

    def forceRefresh(self, fromMaster: bool = False) -> dict:
        """Refresh now from the servers (or the master); S_OK(version) or S_ERROR("Reason(s): ...")."""
        if not self._enabled:
            return S_OK(self._data.getVersion())
        with self._refreshLock:
            try:
                result = self._refresh(fromMaster)
            finally:
                self.lastRefreshTime = time.time()
            self.lastRefreshResult = result
            return result

    def _refresh(self, fromMaster: bool) -> dict:
        sources = self._sources(fromMaster)
        if not sources:
            return S_ERROR(
                "No configuration server known: set /DIRAC/Configuration/Servers"
                + (" or /DIRAC/Configuration/MasterServer" if fromMaster else "")
            )
        reasons = []
        useCertificates = self._useCertificates()
        for url in sources:
            localVersion = self._data.getVersion()
            try:
                client = self._clientFactory(url, useCertificates=useCertificates, timeout=REFRESH_TIMEOUT)
                result = client.getCompressedDataIfNewer(localVersion)
            except Exception as exc:  # network or client failures: try the next server
                reasons.append(f"{url}: {exc}")
                continue
            if not result["OK"]:
                reasons.append(f"{url}: {result['Message']}")
                continue
            value = result["Value"] if isinstance(result.get("Value"), dict) else {}
            newest = str(value.get("newestVersion") or "0")
            data = value.get("data")
            if data:
                loaded = self._install(url, data, newest)
                if not loaded["OK"]:
                    reasons.append(f"{url}: {loaded['Message']}")
                    continue
            return S_OK(self._data.getVersion())
        return S_ERROR("Reason(s):\n\t" + "\n\t".join(reasons))

    def _install(self, url: str, data: Any, newest: str) -> dict:
        """Parse downloaded data and install it if it is newer than what this process holds."""
        try:
            cfg = loadCFGFromText(_decompress(data), f"configuration from {url}")
        except (CFGSyntaxError, ValueError, TypeError) as exc:
            return S_ERROR(f"invalid configuration data: {exc}")
        version = cfg.getOption("/DIRAC/Configuration/Version", "") or newest
        if version <= self._data.getVersion():
            return S_OK()  # another refresh already installed this or a newer one
        self._data.loadRemoteCFG(cfg, version)
        sLog.info("New configuration version loaded", f"{version} from {url}")
        return S_OK()


#: The process-wide refresher of gConfig.
gRefresher = Refresher()
