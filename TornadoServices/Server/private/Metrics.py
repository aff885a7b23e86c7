"""Health, readiness and Prometheus metrics of a running server.

``GET /healthz``
    Liveness: 200 ``S_OK("alive")`` whenever the event loop answers (also while draining).
``GET /readyz``
    Readiness: 200 once the configuration is loaded and every handler is initialised, 503 while the
    server drains (after SIGTERM) -- a load balancer stops sending new calls.
``GET /metrics``
    Prometheus text format, through ``prometheus-client`` (the ``metrics`` extra); who may read it is the
    rule ``/Systems/Tornado/MetricsAuthorization`` (see :func:`metricsAccess`).

Neither needs a client certificate: the TLS context only *requests* one, so a probe without a certificate
reaches HTTP. Probes are counted in ``stats.probes``, not as requests, and write no access-log line.

Requests only bump plain counters of :class:`ServerStats` (a dictionary update per call); everything
Prometheus wants is built at scrape time by a custom collector. With ``--processes N`` every worker writes
its counters to ``<metrics dir>/worker-<pid>.json`` once a second (and right before answering a scrape),
and the worker that answers ``/metrics`` adds up every file: the numbers are those of the whole server,
whichever worker the scrape lands on. Counters of workers that died are kept (the supervisor folds them into
``retired.json``), so totals never go backwards when a worker is restarted.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import ssl
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import tornado.web
from tornado.iostream import StreamClosedError

from TornadoServices.Core import DErrno
from TornadoServices.Core.Encoding import encode
from TornadoServices.Core.ReturnValues import S_ERROR, S_OK
from TornadoServices.Server.private.Credentials import EXPIRED_REASON
from TornadoServices.Server.private.Dispatcher import stripCallStacks
from TornadoServices.Server.private.Stats import LATENCY_BUCKETS
from TornadoServices.Server.private.Supervisor import processAlive

__all__ = [
    "HealthHandler",
    "ReadyHandler",
    "MetricsHandler",
    "MetricsDirectory",
    "handshakeFailureReason",
    "renderMetrics",
    "workerState",
    "PROBE_PATHS",
]

PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
PROMETHEUS_MISSING = (
    "Prometheus metrics need the prometheus-client package, which is not installed: "
    "pip install 'TornadoServices[metrics]' (or prometheus-client) and restart the server"
)
#: Counters added up over workers, dead ones included (everything else in a state is a gauge).
_COUNTERS = ("connectionsAccepted", "handshakeFailures", "connectionsRejected", "requests", "probes", "untrustedForwardedHeaders")
_COUNTER_MAPS = ("requestsByStatus", "authFailures", "handshakeFailureReasons")
_RETIRED = "retired.json"
_LOCK = "lock"


# ---------------------------------------------------------------------------------------------------------
# TLS handshake failures
def handshakeFailureReason(exc: Optional[BaseException]) -> str:
    """A short, bounded label for why a TLS handshake failed (OpenSSL reason or verification message)."""
    if isinstance(exc, StreamClosedError):
        exc = exc.real_error
    if exc is None:
        return "closed by peer"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc.reason or 'unknown'}"[:80]
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or type(exc).__name__).lower()[:80]
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return (errno.errorcode.get(exc.errno or 0, type(exc).__name__)).lower()
    return type(exc).__name__


# ---------------------------------------------------------------------------------------------------------
# process state
def _residentBytes() -> int:
    try:
        with open("/proc/self/statm") as fd:
            return int(fd.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _openFiles() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def workerState(server: Any) -> dict[str, Any]:
    """Every counter and gauge of this process, JSON-ready."""
    state = server.stats.snapshot()
    pools = {}
    for name, runtime in server.runtimes.items():
        executor = runtime.executor
        pools[name] = {
            "busy": min(executor.pending, executor.maxThreads),
            "waiting": executor.waiting,
            "maxThreads": executor.maxThreads,
        }
    state.update(
        pid=os.getpid(),
        worker=server.workerIndex if server.workerIndex is not None else 0,
        threadPools=pools,
        residentBytes=_residentBytes(),
        openFiles=_openFiles(),
        draining=bool(server.draining),
        time=time.time(),
    )
    return state


def _mergeCounters(total: dict[str, Any], state: dict[str, Any]) -> None:
    """Add the counters of ``state`` into ``total`` (both JSON-shaped states)."""
    for key in _COUNTERS:
        total[key] = total.get(key, 0) + int(state.get(key, 0))
    for key in _COUNTER_MAPS:
        into = total.setdefault(key, {})
        for label, value in state.get(key, {}).items():
            into[str(label)] = into.get(str(label), 0) + int(value)
    calls = {(c[0], c[1]): c for c in total.get("calls", [])}
    for service, method, seconds, buckets, byStatus in state.get("calls", []):
        entry = calls.get((service, method))
        if entry is None:
            calls[(service, method)] = [service, method, seconds, list(buckets), dict(byStatus)]
            continue
        entry[2] += seconds
        entry[3] = [a + b for a, b in zip(entry[3], buckets)]
        for status, value in byStatus.items():
            entry[4][str(status)] = entry[4].get(str(status), 0) + value
    total["calls"] = list(calls.values())


class MetricsDirectory:
    """Counters of the workers of one supervisor, one JSON file each (see the module documentation)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        fd = os.open(os.path.join(self.path, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _file(self, pid: int) -> str:
        return os.path.join(self.path, f"worker-{pid}.json")

    @staticmethod
    def _read(path: str) -> Optional[dict[str, Any]]:
        try:
            with open(path) as fd:
                return json.load(fd)
        except (OSError, ValueError):
            return None

    def write(self, state: dict[str, Any]) -> None:
        """Publish this worker's state (atomically: readers see the old or the new file)."""
        target = self._file(state["pid"])
        temporary = f"{target}.{os.getpid()}.tmp"
        with open(temporary, "w") as fd:
            json.dump(state, fd)
        os.replace(temporary, target)

    def collect(self, own: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(states of live workers, counters of dead ones) with ``own`` as this worker's fresh state."""
        self.write(own)
        live: list[dict[str, Any]] = []
        retired: dict[str, Any] = {}
        with self._locked(exclusive=False):
            names = os.listdir(self.path)
            for name in names:
                if not (name.startswith("worker-") and name.endswith(".json")):
                    continue
                state = self._read(os.path.join(self.path, name))
                if state is None:
                    continue
                if state.get("pid") == own["pid"]:
                    continue
                if processAlive(int(state.get("pid", 0))):
                    live.append(state)
                else:
                    _mergeCounters(retired, state)
            if _RETIRED in names:
                _mergeCounters(retired, self._read(os.path.join(self.path, _RETIRED)) or {})
        live.append(own)
        live.sort(key=lambda s: (s.get("worker", 0), s.get("pid", 0)))
        return live, retired

    def retire(self, pid: int) -> None:
        """Fold the counters of the dead worker ``pid`` into ``retired.json`` (called by the supervisor)."""
        path = self._file(pid)
        with self._locked(exclusive=True):
            state = self._read(path)
            if state is None:
                return
            total = self._read(os.path.join(self.path, _RETIRED)) or {}
            _mergeCounters(total, state)
            temporary = os.path.join(self.path, f"{_RETIRED}.tmp")
            with open(temporary, "w") as fd:
                json.dump(total, fd)
            os.replace(temporary, os.path.join(self.path, _RETIRED))
            os.unlink(path)


# ---------------------------------------------------------------------------------------------------------
# Prometheus exposition
def renderMetrics(live: list[dict[str, Any]], retired: dict[str, Any]) -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition; ImportError without prometheus-client."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(live, retired))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    """Metric families built from worker states at scrape time."""

    def __init__(self, live: list[dict[str, Any]], retired: dict[str, Any]) -> None:
        self.live = live
        self.retired = retired

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        total: dict[str, Any] = {}
        _mergeCounters(total, self.retired)
        for state in self.live:
            _mergeCounters(total, state)
        prefix = "tornadoservices"

        calls = CounterMetricFamily(f"{prefix}_calls", "RPC calls answered, by service, method and HTTP status", labels=["service", "method", "status"])
        latency = HistogramMetricFamily(f"{prefix}_call_duration_seconds", "Time from request headers to answer, by service and method", labels=["service", "method"])
        for service, method, seconds, buckets, byStatus in sorted(total.get("calls", []), key=lambda c: (c[0], c[1])):
            for status, value in sorted(byStatus.items()):
                calls.add_metric([service, method, str(status)], value)
            cumulative, running = [], 0
            for bound, count in zip(list(LATENCY_BUCKETS) + [float("inf")], buckets):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            latency.add_metric([service, method], cumulative, sum_value=seconds)
        yield calls
        yield latency

        requests = CounterMetricFamily(f"{prefix}_http_requests", "HTTP requests answered (every path), by status", labels=["status"])
        for status, value in sorted(total.get("requestsByStatus", {}).items()):
            requests.add_metric([str(status)], value)
        yield requests

        handshakes = CounterMetricFamily(f"{prefix}_tls_handshake_failures", "TLS handshakes that failed, by reason", labels=["reason"])
        for reason, value in sorted(total.get("handshakeFailureReasons", {}).items()):
            handshakes.add_metric([reason], value)
        yield handshakes

        auth = CounterMetricFamily(f"{prefix}_auth_failures", "Requests refused with 401/403, by reason", labels=["reason"])
        for reason, value in sorted(total.get("authFailures", {}).items()):
            auth.add_metric([reason], value)
        yield auth

        for key, name, text in (
            ("connectionsAccepted", "connections_accepted", "TLS connections accepted (handshake completed)"),
            ("connectionsRejected", "connections_rejected", "Connections closed at once because MaxConnections was reached"),
            ("probes", "probes", "Health, readiness and metrics requests"),
            ("untrustedForwardedHeaders", "untrusted_forwarded_headers", "Requests with forwarded-certificate headers from peers that are not trusted front ends (ignored)"),
        ):
            family = CounterMetricFamily(f"{prefix}_{name}", text)
            family.add_metric([], total.get(key, 0))
            yield family

        inFlight = GaugeMetricFamily(f"{prefix}_calls_in_flight", "Requests being processed now")
        inFlight.add_metric([], sum(s.get("inFlight", 0) for s in self.live))
        yield inFlight
        connections = GaugeMetricFamily(f"{prefix}_open_connections", "Client connections open now")
        connections.add_metric([], sum(s.get("openConnections", 0) for s in self.live))
        yield connections

        pools: dict[str, dict[str, int]] = {}
        for state in self.live:
            for service, pool in state.get("threadPools", {}).items():
                into = pools.setdefault(service, {"busy": 0, "waiting": 0, "maxThreads": 0})
                for key in into:
                    into[key] += int(pool.get(key, 0))
        for key, name, text in (
            ("waiting", "threadpool_queue_depth", "Calls waiting for a worker thread, by service"),
            ("busy", "threadpool_busy_threads", "Worker threads running a call, by service"),
            ("maxThreads", "threadpool_max_threads", "Worker threads available, by service (all processes)"),
        ):
            family = GaugeMetricFamily(f"{prefix}_{name}", text, labels=["service"])
            for service in sorted(pools):
                family.add_metric([service], pools[service][key])
            yield family

        workers = GaugeMetricFamily(f"{prefix}_workers", "Server processes contributing to these metrics")
        workers.add_metric([], len(self.live))
        yield workers
        draining = GaugeMetricFamily(f"{prefix}_draining", "1 while the server drains before stopping")
        draining.add_metric([], 1 if any(s.get("draining") for s in self.live) else 0)
        yield draining
        rss = GaugeMetricFamily(f"{prefix}_resident_memory_bytes", "Resident memory of each server process", labels=["worker"])
        files = GaugeMetricFamily(f"{prefix}_open_files", "Open file descriptors of each server process", labels=["worker"])
        for state in self.live:
            rss.add_metric([str(state.get("worker", 0))], state.get("residentBytes", 0))
            files.add_metric([str(state.get("worker", 0))], state.get("openFiles", 0))
        yield rss
        yield files


# ---------------------------------------------------------------------------------------------------------
# handlers
class _ProbeHandler(tornado.web.RequestHandler):
    """Base of the probe endpoints: GET/HEAD, JSON S_OK/S_ERROR answers, no client certificate needed."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, server: Any) -> None:  # Tornado hook
        self.tsServer = server

    def prepare(self) -> None:
        self.tsServer.stats.probes += 1
        self.set_header("Cache-Control", "no-store")

    def answer(self, status: int, result: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(encode(stripCallStacks(result)))  # the server's call stacks are not for the client

    def head(self) -> None:
        self.get()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = f"{status_code} {self._reason}"
        if status_code == 405:
            message = f"HTTP method {self.request.method} is not allowed on {self.request.path}: use GET"
        self.set_header("Content-Type", "application/json")
        self.finish(encode(S_ERROR(message)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            self.tsServer.log.exception("Probe failed", self.request.path, lException=value)


class HealthHandler(_ProbeHandler):
    """Liveness: the event loop answers."""

    def get(self) -> None:
        self.answer(200, S_OK("alive"))


class ReadyHandler(_ProbeHandler):
    """Readiness: services initialised and not draining."""

    def get(self) -> None:
        server = self.tsServer
        if server.draining:
            self.answer(503, S_ERROR("Not ready: the server is draining before it stops (SIGTERM); send calls elsewhere"))
        elif not server.ready:
            self.answer(503, S_ERROR("Not ready: the services are still starting"))
        else:
            self.answer(200, S_OK({"status": "ready", "services": sorted(server.runtimes)}))


def metricsAccess(
    rule: str,
    peer: str,
    credentials: Any,
    *,
    acceptLimitedProxies: bool = False,
    acceptIndependentProxies: bool = False,
) -> Optional[tuple[int, dict[str, Any]]]:
    """None when the caller may read /metrics, else (status, S_ERROR).

    ``rule`` is ``/Systems/Tornado/MetricsAuthorization``: ``open`` (anyone, no certificate), ``loopback``
    (no certificate needed from 127.0.0.0/8 or ::1), and/or an authorisation rule as for a method
    (``authenticated``, properties, ``group:<g>``, ``vo:<v>``) that the caller's certificate must satisfy,
    with limited and independent proxies treated as the server's AcceptLimitedProxies /
    AcceptIndependentProxies say, as for any method. When the rule needs a certificate, a chain that expired
    since the handshake (open keep-alive connection) is refused with 401, as for a service call.
    """
    from TornadoServices.Server.AuthManager import AuthManager, normaliseRule

    entries = normaliseRule(rule)
    lowered = {entry.lower() for entry in entries}
    if "open" in lowered:
        return None
    if "loopback" in lowered:
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if address.is_loopback:
                return None
        except ValueError:
            pass
    remaining = [entry for entry in entries if entry.lower() not in ("open", "loopback")]
    if not remaining:
        return 403, S_ERROR(DErrno.ENOAUTH, f"/metrics is served to loopback clients only (/Systems/Tornado/MetricsAuthorization = {rule}), not to {peer}")
    if credentials.error is not None:
        return 401, credentials.error
    expired = credentials.expiredError()
    if expired is not None:
        return 401, expired
    creds = dict(credentials.credDict or {})
    authManager = AuthManager(
        "/Systems/Tornado/MetricsAuthorization",
        acceptLimitedProxies=acceptLimitedProxies,
        acceptIndependentProxies=acceptIndependentProxies,
    )
    if authManager.matchRule(remaining, creds):
        return None
    return 403, S_ERROR(
        DErrno.ENOAUTH,
        f"Unauthorized query to /metrics by {creds.get('DN')}: /Systems/Tornado/MetricsAuthorization = {rule} does not admit it",
    )


class MetricsHandler(_ProbeHandler):
    """Prometheus exposition of the whole server (every worker)."""

    def get(self) -> None:
        server = self.tsServer
        peer = self.request.remote_ip or ""
        settings = server.settings
        credentials = server.requestCredentials(self.request)
        refusal = metricsAccess(
            settings.metricsAuthorization,
            peer,
            credentials,
            acceptLimitedProxies=settings.acceptLimitedProxies,
            acceptIndependentProxies=settings.acceptIndependentProxies,
        )
        if refusal is not None:
            status, result = refusal
            if status == 403:
                reason = "metrics: not authorized"
            elif credentials.error is not None:
                reason = "metrics: no certificate"
            else:  # a readable chain refused with 401: expired since the handshake, labelled as for services
                reason = EXPIRED_REASON
            server.stats.authFailures[reason] += 1
            self.answer(status, result)
            return
        own = workerState(server)
        if server.metricsDirectory is not None:
            live, retired = MetricsDirectory(server.metricsDirectory).collect(own)
        else:
            live, retired = [own], {}
        try:
            body, contentType = renderMetrics(live, retired)
        except ImportError:
            self.answer(501, S_ERROR(PROMETHEUS_MISSING))
            return
        self.set_header("Content-Type", contentType)
        self.finish(body)
