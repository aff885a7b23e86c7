"""The floor: a bare Tornado HTTPS handler with the TLS settings of a TornadoServices server.

``python -m benchmarks.baseline_server --cert C --key K --ca DIR --answer FILE --ready FILE`` serves
``POST /<anything>``: ``method=echo`` answers ``{"OK": true, "Value": <args[0]>}`` (json.loads and
json.dumps, nothing else), any other method answers the bytes of ``FILE`` (the server's ping answer,
captured at the start of the run). No credentials, no authorisation, no logging: what any Tornado-based
RPC server pays at least for TLS (same ``Security.TLS.makeServerContext``: client certificates requested
and verified, proxies allowed, CRLs checked), HTTP parsing and form decoding. ``--profile-out`` works as
in :mod:`benchmarks.services_server` (SIGUSR1 starts, SIGUSR2 writes the statistics).
"""
from __future__ import annotations

import argparse
import json
import os
import signal

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from benchmarks.procstat import raiseFileLimit
from benchmarks.profiling import ThreadProfiler


class BareHandler(tornado.web.RequestHandler):
    """One precomputed answer, or a plain JSON echo of the first argument."""

    answer = b""

    def post(self, *_: str) -> None:
        self.set_header("Content-Type", "application/json")
        if self.get_body_argument("method", "") == "echo":
            value = json.loads(self.get_body_argument("args", "[null]"))[0]
            self.finish(b'{"OK": true, "Value": ' + json.dumps(value).encode() + b"}")
        else:
            self.finish(self.answer)


class AsyncBareHandler(BareHandler):
    """Variant: ``async def post`` (tornado wraps the coroutine in a task)."""

    async def post(self, *args: str) -> None:  # type: ignore[override]
        BareHandler.post(self, *args)


@tornado.web.stream_request_body
class StreamingBareHandler(BareHandler):
    """Variant: ``@stream_request_body``, the body gathered in ``data_received`` and parsed in ``post``."""

    def prepare(self) -> None:
        self._chunks: list[bytes] = []

    def data_received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    async def post(self, *args: str) -> None:  # type: ignore[override]
        self.request.body = b"".join(self._chunks)
        self.request._parse_body()
        BareHandler.post(self, *args)


def _noAccessLog(handler: tornado.web.RequestHandler) -> None:
    """No access log: this is the floor."""


def main(argv: list[str] | None = None) -> None:
    """Start the bare server on 127.0.0.1, write its port to ``--ready``, serve until SIGTERM."""
    from TornadoServices.Security.TLS import makeServerContext

    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_server", description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True, help="host certificate (PEM)")
    parser.add_argument("--key", required=True, help="host key (PEM)")
    parser.add_argument("--ca", required=True, help="CA directory (hashed, with CRLs)")
    parser.add_argument("--answer", required=True, help="file holding the bytes of the ping answer")
    parser.add_argument("--ready", required=True, help="file to write the bound port to once listening")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    parser.add_argument(
        "--handler", default="plain", choices=("plain", "async", "stream"), help="variant of the handler (tornado choices)"
    )
    parser.add_argument("--compress", action="store_true", help="compress_response=True (gzip answers >= 1 KiB)")
    parser.add_argument("--decompress", action="store_true", help="decompress_request=True")
    parser.add_argument("--body-timeout", type=float, default=None, help="HTTPServer body_timeout (default: none)")
    parser.add_argument("--profile-out", default="", help="profile between SIGUSR1 and SIGUSR2, write pstats here")
    parser.add_argument("--profile-clock", default="cpu", choices=ThreadProfiler.CLOCKS, help="per-thread CPU time or wall time")
    args = parser.parse_args(argv)

    raiseFileLimit()
    with open(args.answer, "rb") as fd:
        BareHandler.answer = fd.read()
    context = makeServerContext(args.cert, args.key, args.ca)
    handler = {"plain": BareHandler, "async": AsyncBareHandler, "stream": StreamingBareHandler}[args.handler]
    app = tornado.web.Application([(r"/.*", handler)], log_function=_noAccessLog, compress_response=args.compress)
    server = tornado.httpserver.HTTPServer(
        app,
        ssl_options=context,
        idle_connection_timeout=120,
        body_timeout=args.body_timeout,
        decompress_request=args.decompress,
    )
    sockets = tornado.netutil.bind_sockets(args.port, address="127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    loop = tornado.ioloop.IOLoop.current()
    asyncioLoop = loop.asyncio_loop  # type: ignore[attr-defined]
    asyncioLoop.add_signal_handler(signal.SIGTERM, loop.stop)
    if args.profile_out:
        profiler = ThreadProfiler(args.profile_clock)
        asyncioLoop.add_signal_handler(signal.SIGUSR1, profiler.start)
        asyncioLoop.add_signal_handler(signal.SIGUSR2, profiler.dump, args.profile_out)
    temporary = args.ready + ".tmp"
    with open(temporary, "w") as fd:
        fd.write(str(port))
    os.replace(temporary, args.ready)
    loop.start()


if __name__ == "__main__":
    main()
