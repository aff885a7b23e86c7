"""The floor: a bare Tornado HTTPS handler with the TLS settings of a TornadoServices server.

``python -m benchmarks.baseline_server --cert C --key K --ca DIR --answer FILE --ready FILE`` serves
``POST /<anything>``: ``method=echo`` answers ``{"OK": true, "Value": <args[0]>}`` (json.loads and
json.dumps, nothing else), any other method answers the bytes of ``FILE`` (the server's ping answer,
captured at the start of the run). No credentials, no authorisation, no logging: what any Tornado-based
RPC server pays at least for TLS (same ``Security.TLS.makeServerContext``: client certificates requested
and verified, proxies allowed, CRLs checked), HTTP parsing and form decoding.
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

    def log_request(self) -> None:  # noqa: D102 - no access log: this is the floor
        pass


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
    args = parser.parse_args(argv)

    raiseFileLimit()
    with open(args.answer, "rb") as fd:
        BareHandler.answer = fd.read()
    context = makeServerContext(args.cert, args.key, args.ca)
    app = tornado.web.Application([(r"/.*", BareHandler)])
    server = tornado.httpserver.HTTPServer(app, ssl_options=context, idle_connection_timeout=120)
    sockets = tornado.netutil.bind_sockets(args.port, address="127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    loop = tornado.ioloop.IOLoop.current()
    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    temporary = args.ready + ".tmp"
    with open(temporary, "w") as fd:
        fd.write(str(port))
    os.replace(temporary, args.ready)
    loop.start()


if __name__ == "__main__":
    main()
